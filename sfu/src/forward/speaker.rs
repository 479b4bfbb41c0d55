//! Who is talking: the audio levels publishers put in their packets (RFC 6464, `-dBov`, 0 the
//! loudest, 127 silence) smoothed per participant, the participants above a speech threshold
//! (loudest first), and one dominant speaker who keeps the floor until someone else has been
//! louder for a while (so a cough or a word in between does not move the big tile). Reports
//! are made only on change and at most every [`REPORT_INTERVAL`]. Time is an input.

use std::time::{Duration, Instant};

/// Louder than this (`-dBov`, smaller is louder) counts as speech once smoothed.
pub const SPEECH_LEVEL: u8 = 50;
/// Time constants of the smoothing: rising fast (a speaker is recognised within about a
/// syllable), falling slower.
/// Rising.
pub const ATTACK: Duration = Duration::from_millis(80);
/// Falling.
pub const RELEASE: Duration = Duration::from_millis(300);
/// A speaker stays one this long after its smoothed level fell below speech (the pauses
/// between words).
pub const HOLD: Duration = Duration::from_millis(500);
/// Without a level for this long a participant is silent (muted, or its audio stopped).
pub const STALE: Duration = Duration::from_millis(600);
/// Someone louder than the dominant speaker takes over after being so for this long.
pub const TAKEOVER: Duration = Duration::from_millis(1000);
/// Reports are at least this far apart.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(400);

/// One participant's smoothed loudness.
#[derive(Debug, Clone)]
struct Activity<K> {
    key: K,
    /// Smoothed loudness, `127 - level` (0 silence, 127 the loudest).
    loudness: f32,
    last: Instant,
    /// When its smoothed level was last at speech.
    loud_at: Option<Instant>,
    /// Since when it has been louder than the dominant speaker (takeover candidate).
    louder_since: Option<Instant>,
}

/// What changed: the speakers, loudest first, with their loudness (0.0 to 1.0), and the
/// dominant speaker.
#[derive(Debug, Clone, PartialEq)]
pub struct Report<K> {
    /// Participants speaking now, loudest first.
    pub speakers: Vec<(K, f32)>,
    /// The participant with the floor (the last one who had it, while nobody took over).
    pub dominant: Option<K>,
}

/// The speaker detector of one room.
#[derive(Debug)]
pub struct Speakers<K> {
    entries: Vec<Activity<K>>,
    dominant: Option<K>,
    /// What the last report said (speakers only: levels change all the time).
    reported: (Vec<K>, Option<K>),
    reported_at: Option<Instant>,
    /// The last report itself, for participants who join after it.
    last: Option<Report<K>>,
}

impl<K> Default for Speakers<K> {
    fn default() -> Self {
        Speakers { entries: Vec::new(), dominant: None, reported: (Vec::new(), None), reported_at: None, last: None }
    }
}

impl<K: Clone + PartialEq> Speakers<K> {
    /// Takes one packet's level (`-dBov`, RFC 6464) from `key`'s audio, arrived at `now`.
    pub fn on_level(&mut self, key: &K, level: u8, now: Instant) {
        let sample = f32::from(127 - level.min(127));
        let e = match self.entries.iter().position(|e| &e.key == key) {
            Some(i) => &mut self.entries[i],
            None => {
                let fresh = Activity { key: key.clone(), loudness: 0.0, last: now, loud_at: None, louder_since: None };
                self.entries.push(fresh);
                self.entries.last_mut().expect("just pushed")
            }
        };
        let dt = now.saturating_duration_since(e.last).as_secs_f32();
        let tau = if sample > e.loudness { ATTACK } else { RELEASE };
        e.loudness += (sample - e.loudness) * (1.0 - (-dt / tau.as_secs_f32()).exp());
        e.last = now;
        if e.loudness >= f32::from(127 - SPEECH_LEVEL) {
            e.loud_at = Some(now);
        }
    }

    /// Forgets a participant that left.
    pub fn remove(&mut self, key: &K) {
        self.entries.retain(|e| &e.key != key);
        if self.dominant.as_ref() == Some(key) {
            self.dominant = None;
        }
    }

    /// The speakers now, loudest first.
    fn speaking(&self, now: Instant) -> Vec<(K, f32)> {
        let mut out: Vec<(K, f32)> = self
            .entries
            .iter()
            .filter(|e| {
                now.saturating_duration_since(e.last) < STALE
                    && e.loud_at.is_some_and(|t| now.saturating_duration_since(t) < HOLD)
            })
            .map(|e| (e.key.clone(), e.loudness))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    /// Moves the floor: the loudest speaker takes it when nobody has it, or once it has been
    /// louder than the holder (or the holder silent) for [`TAKEOVER`].
    fn update_dominant(&mut self, speaking: &[(K, f32)], now: Instant) {
        let Some((top, top_loudness)) = speaking.first().cloned() else {
            for e in &mut self.entries {
                e.louder_since = None;
            }
            return;
        };
        let holder = self.dominant.as_ref().map(|d| speaking.iter().find(|(k, _)| k == d).map_or(0.0, |s| s.1));
        let Some(holder_loudness) = holder else {
            self.dominant = Some(top);
            return;
        };
        for e in &mut self.entries {
            let challenger = Some(&e.key) != self.dominant.as_ref() && e.key == top && top_loudness > holder_loudness;
            e.louder_since = if challenger { Some(e.louder_since.unwrap_or(now)) } else { None };
            if let Some(since) = e.louder_since
                && now.saturating_duration_since(since) >= TAKEOVER
            {
                self.dominant = Some(e.key.clone());
                e.louder_since = None;
            }
        }
    }

    /// A report when the speakers or the dominant speaker changed since the last one, and that
    /// was at least [`REPORT_INTERVAL`] ago.
    pub fn poll(&mut self, now: Instant) -> Option<Report<K>> {
        let speaking = self.speaking(now);
        self.update_dominant(&speaking, now);
        let keys: Vec<K> = speaking.iter().map(|(k, _)| k.clone()).collect();
        if (&keys, &self.dominant) == (&self.reported.0, &self.reported.1) {
            return None;
        }
        if self.reported_at.is_some_and(|t| now.saturating_duration_since(t) < REPORT_INTERVAL) {
            return None;
        }
        self.reported_at = Some(now);
        self.reported = (keys, self.dominant.clone());
        let speakers = speaking.into_iter().map(|(k, l)| (k, (l / 127.0).clamp(0.0, 1.0))).collect();
        let report = Report { speakers, dominant: self.dominant.clone() };
        self.last = Some(report.clone());
        Some(report)
    }

    /// The last report (what a participant that joins after it is told), if any was made.
    pub fn last_report(&self) -> Option<&Report<K>> {
        self.last.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who talks when: (participant, level `-dBov`, from ms, to ms), a packet every 20 ms.
    type Talk = (&'static str, u8, u64, u64);

    /// Runs `talks` for `until_ms` (polling every 20 ms) and returns each report with its time.
    fn run(talks: &[Talk], until_ms: u64) -> Vec<(u64, Vec<&'static str>, Option<&'static str>)> {
        let t0 = Instant::now();
        let mut s = Speakers::default();
        let mut out = Vec::new();
        for ms in (0..=until_ms).step_by(20) {
            let now = t0 + Duration::from_millis(ms);
            for &(who, level, from, to) in talks {
                if (from..to).contains(&ms) {
                    s.on_level(&who, level, now);
                }
            }
            if let Some(r) = s.poll(now) {
                out.push((ms, r.speakers.iter().map(|(k, _)| *k).collect(), r.dominant));
            }
        }
        out
    }

    #[test]
    fn speakers_and_the_floor_over_time() {
        // columns: case, talks, duration (ms), reports (ms, speakers loudest first, dominant)
        type Row = (&'static str, Vec<Talk>, u64, Vec<(u64, Vec<&'static str>, Option<&'static str>)>);
        let rows: Vec<Row> = vec![
            ("silence (level 127) is nobody", vec![("a", 127, 0, 3000), ("b", 127, 0, 3000)], 3000, vec![]),
            ("background noise below speech is nobody", vec![("a", 70, 0, 3000)], 3000, vec![]),
            (
                "one talks: reported once smoothed, then silent once it stops",
                vec![("a", 20, 0, 2000), ("a", 127, 2000, 4000)],
                4000,
                // recognised within an attack, gone a release and a hold after the last word
                vec![(120, vec!["a"], Some("a")), (2560, vec![], Some("a"))],
            ),
            (
                "a louder second speaker takes the floor only after a second of it",
                vec![("a", 40, 0, 5000), ("b", 10, 1000, 5000)],
                5000,
                // b joins the speakers, passes a (held to the report interval), and takes the
                // floor a second after it became the loudest
                vec![
                    (180, vec!["a"], Some("a")),
                    (1100, vec!["a", "b"], Some("a")),
                    (1500, vec!["b", "a"], Some("a")),
                    (2120, vec!["b", "a"], Some("b")),
                ],
            ),
            (
                "a word from someone else keeps the floor where it is",
                vec![("a", 30, 0, 4000), ("b", 10, 1500, 1900)],
                4000,
                // b's packets stop after its word: it stays a speaker through the hold, louder
                // than a for less than the takeover time
                vec![
                    (140, vec!["a"], Some("a")),
                    (1600, vec!["a", "b"], Some("a")),
                    (2000, vec!["b", "a"], Some("a")),
                    (2400, vec!["a"], Some("a")),
                ],
            ),
            (
                "the holder falls silent: the one still talking takes over after the takeover time",
                vec![("a", 20, 0, 1500), ("b", 30, 0, 5000), ("a", 127, 1500, 5000)],
                5000,
                // a (louder) has the floor; its silence lets b pass it, then b alone, then b
                // takes the floor a second after passing it
                vec![
                    (120, vec!["a"], Some("a")),
                    (520, vec!["a", "b"], Some("a")),
                    (1520, vec!["b", "a"], Some("a")),
                    (2060, vec!["b"], Some("a")),
                    (2520, vec!["b"], Some("b")),
                ],
            ),
        ];
        for (case, talks, until, want) in rows {
            assert_eq!(run(&talks, until), want, "{case}");
        }
    }

    #[test]
    fn reports_are_rate_limited_and_a_leaver_is_forgotten() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Speakers::default();
        for ms in (0..600).step_by(20) {
            s.on_level(&"a", 10, at(ms));
        }
        assert!(s.poll(at(600)).is_some_and(|r| r.dominant == Some("a")));
        for ms in (600..700).step_by(20) {
            s.on_level(&"b", 5, at(ms));
            s.on_level(&"a", 10, at(ms));
        }
        // b joins the speakers 100 ms after the last report: held back until the interval
        assert_eq!(s.poll(at(700)), None);
        s.on_level(&"a", 10, at(1000));
        s.on_level(&"b", 5, at(1000));
        let r = s.poll(at(1000)).expect("after the interval");
        assert_eq!(r.speakers.len(), 2);
        s.remove(&"a");
        let r = s.poll(at(1400)).expect("a left");
        assert_eq!(s.last_report(), Some(&r), "kept for newcomers");
        assert_eq!((r.speakers.iter().map(|x| x.0).collect::<Vec<_>>(), r.dominant), (vec!["b"], Some("b")));
        assert!(r.speakers.iter().all(|x| (0.0..=1.0).contains(&x.1)));
    }
}
