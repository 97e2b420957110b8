//! The UE side, `mbms-gateway probe`: what a phone does with the broadcast.
//! [`key_management`] obtains MSKs as TS 33.246 §6.3.2 has a UE do
//! (registration and MSK requests over HTTP Digest, MIKEY MSK messages);
//! [`probe`] joins the sessions, opens the MTK messages, decrypts and
//! verifies, and reports: a confidence monitor for operators.

pub mod key_management;
pub mod probe;
