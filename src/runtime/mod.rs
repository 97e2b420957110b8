//! The runtime around the sans-IO core: tasks, sockets, files and the BM-SC
//! connection. Time and randomness are read here and passed into [`crate::protocol`].

pub mod bmsc;
