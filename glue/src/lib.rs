//! What the SFU and its load tester both need to drive `rtc` peer connections, written once:
//! the timer heap of a driver loop ([`timers`]), the interceptor that hands inbound RTCP to the
//! application ([`feedback`]), the replay window of a stream ([`replay`]) and SRTP session key
//! derivation ([`srtp_kdf`]).

pub mod feedback;
pub mod replay;
pub mod srtp_kdf;
pub mod timers;
