//! Which of an uplink's probe targets answer. A target that stays silent
//! while another answers through the same uplink is a dead target (a
//! filtered resolver, a host that went away), not a sign the uplink is
//! dead: its failures are not fed to the uplink's health, and it is probed
//! only now and then, to notice when it answers again. Pure.

/// Of every this many probes, one goes to a dead target.
const DEAD_TARGET_EVERY: u64 = 20;

#[derive(Debug, Clone)]
pub struct TargetBook {
    /// Consecutive failures per target.
    fails: Vec<u32>,
    answered: Vec<bool>,
    dead: Vec<bool>,
    turn: u64,
}

/// What one probe result means for the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Answer,
    Loss,
    /// A dead target's silence: says nothing about the uplink.
    Ignore,
}

impl TargetBook {
    pub fn new(targets: usize) -> TargetBook {
        TargetBook {
            fails: vec![0; targets],
            answered: vec![false; targets],
            dead: vec![false; targets],
            turn: 0,
        }
    }

    /// The target to probe next: the live ones in turn, and every
    /// `DEAD_TARGET_EVERY`th probe a dead one.
    pub fn next(&mut self) -> usize {
        let n = self.fails.len().max(1);
        self.turn += 1;
        let dead: Vec<usize> = (0..self.dead.len()).filter(|i| self.dead[*i]).collect();
        let live: Vec<usize> = (0..self.dead.len()).filter(|i| !self.dead[*i]).collect();
        if !dead.is_empty() && (self.turn.is_multiple_of(DEAD_TARGET_EVERY) || live.is_empty()) {
            return dead[(self.turn / DEAD_TARGET_EVERY) as usize % dead.len()];
        }
        if live.is_empty() {
            return (self.turn as usize) % n;
        }
        live[(self.turn as usize) % live.len()]
    }

    /// Records target `i`'s result. `down_after` consecutive failures of a
    /// target while another one answers make it dead. Returns what to feed
    /// the uplink's health, and whether `i` just became dead.
    pub fn record(&mut self, i: usize, answered: bool, down_after: u32) -> (Feed, bool) {
        if i >= self.fails.len() {
            return (if answered { Feed::Answer } else { Feed::Loss }, false);
        }
        if answered {
            self.fails[i] = 0;
            self.answered[i] = true;
            self.dead[i] = false;
            return (Feed::Answer, false);
        }
        self.fails[i] += 1;
        if self.dead[i] {
            return (Feed::Ignore, false);
        }
        let another_answers = (0..self.fails.len())
            .any(|j| j != i && !self.dead[j] && self.answered[j] && self.fails[j] == 0);
        if another_answers && self.fails[i] >= down_after {
            self.dead[i] = true;
            return (Feed::Ignore, true);
        }
        (Feed::Loss, false)
    }

    pub fn is_dead(&self, i: usize) -> bool {
        self.dead.get(i).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::health::{LinkHealth, LinkState, Thresholds};
    use std::time::Duration;

    /// Drives a book and a health machine: `answers(target, round)`.
    fn run(rounds: usize, answers: impl Fn(usize, usize) -> bool) -> (LinkHealth, TargetBook) {
        let th = Thresholds::default();
        let mut book = TargetBook::new(2);
        let mut h = LinkHealth::new(0);
        for round in 0..rounds {
            let t = book.next();
            let ok = answers(t, round);
            match book.record(t, ok, th.down_after).0 {
                Feed::Answer => h.record(Some(Duration::from_millis(20)), &th, 0),
                Feed::Loss => h.record(None, &th, 0),
                Feed::Ignore => None,
            };
        }
        (h, book)
    }

    #[test]
    fn one_silent_target_does_not_keep_the_uplink_unknown() {
        // Target 1 never answers (a filtered resolver); target 0 does.
        let (h, book) = run(12, |t, _| t == 0);
        assert_eq!(h.state, LinkState::Up);
        assert!(book.is_dead(1) && !book.is_dead(0));
    }

    #[test]
    fn the_uplink_still_goes_down_when_every_target_does() {
        let (h, _) = run(60, |t, round| t == 0 && round < 20);
        assert_eq!(h.state, LinkState::Down);
    }

    #[test]
    fn a_dead_target_that_answers_again_is_live_again() {
        let (_, book) = run(200, |t, round| t == 0 || round > 60);
        assert!(!book.is_dead(1));
    }
}
