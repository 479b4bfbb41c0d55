//! Pure per-packet forwarding logic of the SFU: sequence/timestamp
//! unwrapping and rewriting, VP8/H.264 payload inspection, simulcast layer
//! selection, the retransmission cache and SRTP protection. No IO and no clock reads: time is
//! always passed in.

pub mod audio;
pub mod budget;
pub mod cache;
pub mod dynacast;
pub mod h264;
pub mod munger;
pub mod prefetch;
#[cfg(test)]
mod properties;
pub mod rate;
pub mod selector;
pub mod seq;
pub mod speaker;
pub mod srtp;
pub mod switch_hint;
pub mod temporal;
pub mod vp8;

pub use cache::PacketCache;
pub use munger::{RtpMunger, SeqOrigin};
pub use selector::{Action, Layer, LayerActivity, LayerSelector, PliThrottle, Wish};
pub use seq::{SeqUnwrapper, TsUnwrapper, seq_is_newer, ts_is_newer};
pub use vp8::{PictureId, Vp8Descriptor, Vp8Error, Vp8Munger, Vp8Rewrite};
