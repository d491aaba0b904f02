//! The listener: hyper 1 through hyper-util, HTTP/1.1 and h2c, graceful drain.
//!
//! STUB: to be filled in.
