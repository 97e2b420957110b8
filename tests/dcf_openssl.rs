//! Third-party check of DCF content encryption: the `openssl enc` command line
//! (an independent AES-CBC/CTR and PKCS#7 implementation) must decrypt the
//! ciphertext our writer puts in odda, and its own encryption of the same
//! plaintext must be byte-identical to ours. The ciphertext and IV are taken at
//! the offsets of the layout, not through our reader.
//!
//! Skipped, with a message, where no `openssl` binary is installed.

use std::io::Write;
use std::process::{Command, Stdio};

use mbms_gateway::protocol::dcf::{DcfParams, DcfWriter, EncryptionMethod};
use mbms_gateway::protocol::keys::MtkKey;

const KEY: [u8; 16] = [
    0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c,
];
const IV: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0xff,
];
const SIZES: [usize; 7] = [0, 1, 15, 16, 17, 4096, 100_003];

fn openssl_available() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("openssl not installed: third-party DCF check skipped");
    }
    found
}

/// Runs `openssl enc` over `input`; stdin is written from a thread so a large
/// input cannot deadlock against a full stdout pipe.
fn openssl_enc(cipher: &str, decrypt: bool, iv: &[u8], input: Vec<u8>) -> Vec<u8> {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "enc",
        cipher,
        "-K",
        &hex::encode(KEY),
        "-iv",
        &hex::encode(iv),
    ]);
    if decrypt {
        cmd.arg("-d");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("openssl output");
    feeder.join().expect("feeder").expect("write to openssl");
    assert!(
        output.status.success(),
        "openssl {cipher} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 % 253) as u8).collect()
}

/// Our DCF, then the IV and ciphertext cut out at the layout's offsets.
fn our_dcf(method: EncryptionMethod, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let params = DcfParams {
        content_type: "application/octet-stream".into(),
        content_id: "cid:openssl-check".into(),
        rights_issuer_url: String::new(),
        textual_headers: Vec::new(),
        method,
        plaintext_len: plaintext.len() as u64,
    };
    let mut writer = DcfWriter::new(params, &MtkKey::new(KEY), IV).unwrap();
    let layout = *writer.layout();
    let mut dcf = writer.header().to_vec();
    for chunk in plaintext.chunks(1000) {
        writer.encrypt(chunk, &mut dcf).unwrap();
    }
    writer.finish(&mut dcf).unwrap();
    assert_eq!(dcf.len() as u64, layout.total_len);
    let iv = dcf[layout.iv_offset as usize..layout.ciphertext_offset as usize].to_vec();
    let ciphertext = dcf[layout.ciphertext_offset as usize..].to_vec();
    (iv, ciphertext)
}

#[test]
fn openssl_agrees_on_cbc() {
    if !openssl_available() {
        return;
    }
    for len in SIZES {
        let plaintext = payload(len);
        let (iv, ciphertext) = our_dcf(EncryptionMethod::Aes128Cbc, &plaintext);
        assert_eq!(iv, IV);
        assert_eq!(ciphertext.len(), (len / 16 + 1) * 16);
        // openssl checks and strips PKCS#7 (RFC 2630) padding itself.
        let decrypted = openssl_enc("-aes-128-cbc", true, &iv, ciphertext.clone());
        assert!(decrypted == plaintext, "openssl decrypt, {len} bytes");
        let theirs = openssl_enc("-aes-128-cbc", false, &iv, plaintext);
        assert!(theirs == ciphertext, "openssl encrypt, {len} bytes");
    }
}

#[test]
fn openssl_agrees_on_ctr() {
    if !openssl_available() {
        return;
    }
    for len in SIZES {
        let plaintext = payload(len);
        let (iv, ciphertext) = our_dcf(EncryptionMethod::Aes128Ctr, &plaintext);
        assert_eq!(ciphertext.len(), len);
        // The IV ends in 0xff: the counter must carry into the next byte.
        let theirs = openssl_enc("-aes-128-ctr", false, &iv, plaintext);
        assert!(theirs == ciphertext, "openssl CTR, {len} bytes");
    }
}
