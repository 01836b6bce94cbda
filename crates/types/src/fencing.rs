//! Fencing tokens: proof of a leadership, checked by the state machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// One leadership of the cluster: node `leader` leading in `term`, since its first entry at log
/// index `since_index`.
///
/// A service that runs work on the leader only takes the token when its node becomes leader and
/// writes with it ([`crate::Command::Fenced`]). The state machine applies such a write only when
/// the entry carrying it was proposed by the same leader in the same term, so once another leader
/// has been elected, a write of the old one is refused on every replica, even if the old leader has
/// not noticed yet. Tokens are totally ordered by term.
///
/// Written as `TERM-LEADER-INDEX` in the HTTP API (`leader_token=7-2-130`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaderToken {
    /// The term of the leadership.
    pub term: u64,
    /// The leader.
    pub leader: NodeId,
    /// The log index of the leader's first entry of the term (informative: not checked).
    pub since_index: u64,
}

impl fmt::Display for LeaderToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.term, self.leader, self.since_index)
    }
}

impl FromStr for LeaderToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("a leader token is TERM-LEADER-INDEX (three whole numbers), got {s:?}");
        let mut parts = s.split('-').map(|p| p.parse::<u64>().map_err(|_| bad()));
        let (Some(term), Some(leader), Some(since_index), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(LeaderToken { term: term?, leader: leader?, since_index: since_index? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_text() {
        let token = LeaderToken { term: 7, leader: 2, since_index: 130 };
        assert_eq!(token.to_string().parse::<LeaderToken>(), Ok(token));
        for bad in ["", "7", "7-2", "7-2-x", "7-2-1-4", "-1-2-3"] {
            assert!(bad.parse::<LeaderToken>().is_err(), "{bad:?} parsed");
        }
    }
}
