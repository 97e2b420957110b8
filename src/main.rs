fn main() {
    eprintln!("mbms-gateway: the command-line interface is not built yet");
    std::process::exit(2);
}
