/*
 * libsrtp as an independent SRTP/SRTCP peer for tests/libsrtp_interop.rs.
 *
 * Usage: srtp_peer MODE TAG [ssrc=HEX] MKI_HEX KEY_HEX [MKI_HEX KEY_HEX ...]
 *   MODE     protect | unprotect | protect-rtcp | unprotect-rtcp
 *   TAG      80 | 32: HMAC-SHA1 tag bits on SRTP (SRTCP always uses 80);
 *            0: no integrity on SRTP (null auth, no tag)
 *   ssrc=HEX one stream of that SSRC instead of any SSRC; its ROC can then
 *            be set with srtp_set_stream_roc before a packet (see below)
 *   KEY_HEX  30 bytes: 16-byte master key followed by the 14-byte master salt
 *   MKI_HEX  the MKI of that master key (all MKIs of one length)
 *
 * Profile: AES-CM-128 with HMAC-SHA1, kdr 0, replay window 128, any SSRC.
 *
 * stdin holds records, big-endian: u32 length, u8 master key number (protect
 * modes only), with ssrc= a u32 ROC field (0: leave the ROC, n: set it to
 * n - 1 first), then the packet. For each record stdout gets: i32 libsrtp
 * status, u32 length, the packet after (un)protection (length 0 on error).
 */
#include <srtp2/srtp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 16
#define MAX_PACKET 4096
#define MASTER_LEN 30

static void die(const char *what)
{
    fprintf(stderr, "srtp_peer: %s\n", what);
    exit(2);
}

static size_t unhex(const char *hex, unsigned char *out, size_t max)
{
    size_t len = strlen(hex);
    if (len % 2 != 0 || len / 2 > max) {
        die("bad hex argument");
    }
    for (size_t i = 0; i < len / 2; i++) {
        unsigned int byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) {
            die("bad hex digit");
        }
        out[i] = (unsigned char)byte;
    }
    return len / 2;
}

static int read_exact(unsigned char *buf, size_t len)
{
    return fread(buf, 1, len, stdin) == len;
}

static void write_u32(uint32_t value)
{
    unsigned char b[4] = {value >> 24, value >> 16, value >> 8, value};
    fwrite(b, 1, 4, stdout);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        die("usage: srtp_peer MODE TAG [ssrc=HEX] MKI_HEX KEY_HEX [MKI_HEX KEY_HEX ...]");
    }
    const char *mode = argv[1];
    int short_tag = strcmp(argv[2], "32") == 0;
    int null_auth = strcmp(argv[2], "0") == 0;
    if (!short_tag && !null_auth && strcmp(argv[2], "80") != 0) {
        die("TAG must be 80, 32 or 0");
    }
    int one_ssrc = strncmp(argv[3], "ssrc=", 5) == 0;
    uint32_t ssrc = 0;
    if (one_ssrc) {
        ssrc = (uint32_t)strtoul(argv[3] + 5, NULL, 16);
        argv++;
        argc--;
    }
    if (argc < 5 || (argc - 3) % 2 != 0 || (argc - 3) / 2 > MAX_KEYS) {
        die("usage: srtp_peer MODE TAG [ssrc=HEX] MKI_HEX KEY_HEX [MKI_HEX KEY_HEX ...]");
    }
    int protect = strcmp(mode, "protect") == 0 || strcmp(mode, "protect-rtcp") == 0;
    int rtcp = strcmp(mode, "protect-rtcp") == 0 || strcmp(mode, "unprotect-rtcp") == 0;
    if (!protect && !rtcp && strcmp(mode, "unprotect") != 0) {
        die("unknown mode");
    }

    int num_keys = (argc - 3) / 2;
    static unsigned char mkis[MAX_KEYS][SRTP_MAX_MKI_LEN];
    static unsigned char keys[MAX_KEYS][MASTER_LEN];
    srtp_master_key_t master[MAX_KEYS];
    srtp_master_key_t *master_ptrs[MAX_KEYS];
    for (int i = 0; i < num_keys; i++) {
        master[i].mki_size = (unsigned int)unhex(argv[3 + 2 * i], mkis[i], SRTP_MAX_MKI_LEN);
        if (unhex(argv[4 + 2 * i], keys[i], MASTER_LEN) != MASTER_LEN) {
            die("master key must be 30 bytes");
        }
        master[i].mki_id = mkis[i];
        master[i].key = keys[i];
        master_ptrs[i] = &master[i];
    }

    if (srtp_init() != srtp_err_status_ok) {
        die("srtp_init failed");
    }
    srtp_policy_t policy;
    memset(&policy, 0, sizeof(policy));
    if (short_tag) {
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&policy.rtp);
    } else if (null_auth) {
        srtp_crypto_policy_set_aes_cm_128_null_auth(&policy.rtp);
    } else {
        srtp_crypto_policy_set_rtp_default(&policy.rtp);
    }
    srtp_crypto_policy_set_rtcp_default(&policy.rtcp);
    if (one_ssrc) {
        policy.ssrc.type = ssrc_specific;
        policy.ssrc.value = ssrc;
    } else {
        policy.ssrc.type = protect ? ssrc_any_outbound : ssrc_any_inbound;
    }
    policy.key = NULL;
    policy.keys = master_ptrs;
    policy.num_master_keys = (unsigned long)num_keys;
    policy.window_size = 128;
    policy.allow_repeat_tx = 0;
    policy.next = NULL;
    srtp_t session;
    srtp_err_status_t status = srtp_create(&session, &policy);
    if (status != srtp_err_status_ok) {
        fprintf(stderr, "srtp_create failed with status %d\n", status);
        return 2;
    }

    unsigned char packet[MAX_PACKET + SRTP_MAX_TRAILER_LEN + 4];
    unsigned char len_bytes[4];
    while (read_exact(len_bytes, 4)) {
        uint32_t len = (uint32_t)len_bytes[0] << 24 | (uint32_t)len_bytes[1] << 16 |
                       (uint32_t)len_bytes[2] << 8 | len_bytes[3];
        unsigned char key_number = 0;
        unsigned char roc_bytes[4] = {0, 0, 0, 0};
        if (len > MAX_PACKET || (protect && !read_exact(&key_number, 1)) ||
            (one_ssrc && !read_exact(roc_bytes, 4)) || !read_exact(packet, len)) {
            die("bad input record");
        }
        uint32_t roc_field = (uint32_t)roc_bytes[0] << 24 | (uint32_t)roc_bytes[1] << 16 |
                             (uint32_t)roc_bytes[2] << 8 | roc_bytes[3];
        if (roc_field != 0 && srtp_set_stream_roc(session, ssrc, roc_field - 1) !=
                                  srtp_err_status_ok) {
            die("srtp_set_stream_roc failed");
        }
        int out_len = (int)len;
        if (protect && rtcp) {
            status = srtp_protect_rtcp_mki(session, packet, &out_len, 1, key_number);
        } else if (protect) {
            status = srtp_protect_mki(session, packet, &out_len, 1, key_number);
        } else if (rtcp) {
            status = srtp_unprotect_rtcp_mki(session, packet, &out_len, 1);
        } else {
            status = srtp_unprotect_mki(session, packet, &out_len, 1);
        }
        if (status != srtp_err_status_ok) {
            out_len = 0;
        }
        write_u32((uint32_t)status);
        write_u32((uint32_t)out_len);
        fwrite(packet, 1, (size_t)out_len, stdout);
    }

    srtp_dealloc(session);
    srtp_shutdown();
    return fflush(stdout) == 0 ? 0 : 2;
}
