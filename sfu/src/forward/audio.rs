//! The forwarding policy of audio: one layer, so what remains is pausing (the subscriber's
//! wish or an operator's mute) and where a subscriber's stream starts.

use super::selector::{Action, Layer};

/// What to do with an audio packet for one subscriber: nothing while paused or muted; the
/// first packet after that (or ever) starts the stream, so the munger treats it as a switch
/// (a new source: no false gap for what was not forwarded meanwhile).
pub fn audio_action(paused: bool, started: bool, layer: Layer) -> Action {
    if paused {
        Action::Drop
    } else if !started {
        Action::Switch { from: None, to: layer }
    } else {
        Action::Forward
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_forwards_unless_paused_and_starts_with_a_switch() {
        let l = Layer::LOW;
        // columns: paused (or muted), started, action
        let rows = [
            (false, false, Action::Switch { from: None, to: l }),
            (false, true, Action::Forward),
            (true, false, Action::Drop),
            (true, true, Action::Drop),
        ];
        for (paused, started, want) in rows {
            assert_eq!(audio_action(paused, started, l), want, "paused {paused} started {started}");
        }
    }
}
