//! CPU affinity for the load harnesses (benches and the load test), so a
//! measured thread or process gets a CPU of its own.

/// Lets thread `tid` (0: the calling one) run on `cpus` only. Threads it
/// creates afterwards inherit the set. Only `sched_setaffinity`, so it may run
/// between fork and exec.
pub fn set_affinity(
    tid: libc::pid_t,
    cpus: impl IntoIterator<Item = usize>,
) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and the call get valid
    // pointers to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
