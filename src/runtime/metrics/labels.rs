//! The fixed label values. Each enum lists every value it can export, so a
//! metric's series are known from the configuration alone.

/// A label value type with a closed set of values.
pub trait LabelValue: Copy + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
    /// Position in [`LabelValue::ALL`], for per-value handle arrays.
    fn index(self) -> usize;
}

macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl LabelValue for $name {
            const ALL: &'static [Self] = &[$(Self::$variant,)+];

            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_enum! {
    /// Why an ingest packet was dropped.
    DropReason {
        /// Larger than the egress datagram budget after protection.
        Oversize => "oversize",
        /// Not a parseable RTP packet.
        Malformed => "malformed",
        /// An RTP header without payload.
        Empty => "empty",
        /// RTCP (RFC 5761 packet type) that does not parse.
        RtcpMalformed => "rtcp_malformed",
        /// No MTK (or no valid MSK to deliver one) to protect it with.
        NoKey => "no_key",
        /// A packet index already sent (duplicate, or too far behind).
        Duplicate => "duplicate",
        /// SRTP refused the packet for another reason.
        ProtectError => "protect_error",
        /// More SSRCs in the session than the SRTP context tracks.
        TooManyStreams => "too_many_streams",
    }
}

label_enum! {
    /// How a configuration reload ended.
    ReloadResult {
        /// Every session of the new configuration runs.
        Applied => "applied",
        /// Applied, but some sessions of the new configuration failed to start.
        Partial => "partial",
        /// Invalid or not reloadable: the running configuration stays.
        Refused => "refused",
    }
}

label_enum! {
    /// The kind of a session.
    SessionKind {
        Streaming => "streaming",
        Download => "download",
    }
}

label_enum! {
    /// What an egress datagram carries.
    EgressLabel {
        Srtp => "srtp",
        Srtcp => "srtcp",
        Mikey => "mikey",
        Alc => "alc",
    }
}

label_enum! {
    /// How a MIKEY MTK message was delivered.
    MikeyTransport {
        /// UDP to port 2269 (TS 33.246 §6.3.3.2.2).
        Udp => "udp",
        /// As an object in the FLUTE session (download delivery).
        Flute => "flute",
    }
}

label_enum! {
    /// The BM-SC connection state, without its details.
    BmscState {
        Connecting => "connecting",
        Connected => "connected",
        Failed => "failed",
    }
}

label_enum! {
    /// The BM-SC unary calls.
    BmscRpc {
        LeaseMtkIds => "lease_mtk_ids",
        GetCurrentMsk => "get_current_msk",
        WatchMsks => "watch_msks",
    }
}

label_enum! {
    /// Why a BM-SC call failed.
    RpcFailure {
        /// The BM-SC answered with a gRPC error status.
        Status => "status",
        /// No answer within the call timeout.
        Timeout => "timeout",
    }
}

label_enum! {
    /// How a download object entered the gateway.
    IngestOrigin {
        /// Picked up from the session's watch folder.
        Watch => "watch",
        /// Uploaded to the HTTP push endpoint.
        Push => "push",
        /// Given to `mbms-gateway send`.
        Send => "send",
    }
}

label_enum! {
    /// Why a download object (or a push request for one) was refused or
    /// abandoned before sending.
    IngestRejectReason {
        /// A push without a bearer token, or with a wrong one.
        Unauthorized => "unauthorized",
        /// A push request that is not a well-formed object upload.
        Malformed => "malformed",
        /// A Content-Location that is absolute, empty, has `..` and the like.
        BadContentLocation => "bad_content_location",
        /// An object over the configured size limit.
        TooLarge => "too_large",
        /// A push to a session that is not configured.
        UnknownSession => "unknown_session",
        /// A file that cannot be opened or read.
        Unreadable => "unreadable",
        /// A file removed or replaced while it was being read.
        DeletedWhileRead => "deleted_while_read",
        /// A file that shrank or grew while it was being read.
        ChangedWhileRead => "changed_while_read",
        /// No valid MTK (the session is halted: fail closed).
        NoKey => "no_key",
        /// The protected copy could not be written to the spool.
        SpoolFailed => "spool_failed",
        /// The session stopped before it took the object.
        QueueClosed => "queue_closed",
    }
}

impl BmscRpc {
    /// The call named as in the BM-SC service definition (`"LeaseMtkIds"`).
    pub fn from_call(call: &str) -> Option<Self> {
        match call {
            "LeaseMtkIds" => Some(Self::LeaseMtkIds),
            "GetCurrentMsk" => Some(Self::GetCurrentMsk),
            "WatchMsks" => Some(Self::WatchMsks),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<L: LabelValue + std::fmt::Debug>() {
        for (i, value) in L::ALL.iter().enumerate() {
            assert_eq!(value.index(), i, "{value:?}");
            let text = value.as_str();
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{text}"
            );
        }
    }

    #[test]
    fn values_are_lowercase_and_indexed_in_order() {
        check::<DropReason>();
        check::<EgressLabel>();
        check::<MikeyTransport>();
        check::<BmscState>();
        check::<BmscRpc>();
        check::<RpcFailure>();
        check::<IngestOrigin>();
        check::<IngestRejectReason>();
    }

    #[test]
    fn rpc_names_from_the_client() {
        for rpc in BmscRpc::ALL {
            let call = match rpc {
                BmscRpc::LeaseMtkIds => "LeaseMtkIds",
                BmscRpc::GetCurrentMsk => "GetCurrentMsk",
                BmscRpc::WatchMsks => "WatchMsks",
            };
            assert_eq!(BmscRpc::from_call(call), Some(*rpc));
        }
        assert_eq!(BmscRpc::from_call("Lease"), None);
    }
}
