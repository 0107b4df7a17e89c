//! HAProxy's termination state: how a request (HTTP mode) or a connection (TCP mode) ended,
//! as two letters in the access log — who ended it, then in which phase. `--` is a normal
//! end. The letters are HAProxy's ("Session state at disconnection" in its configuration
//! manual); webfarm uses the subset below.

use std::fmt;

/// Who or what ended the exchange (the first letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndedBy {
    /// `-`: nobody; it ended normally.
    Normal,
    /// `C`: the client aborted or sent something invalid.
    Client,
    /// `S`: the server refused, aborted or answered something invalid.
    Server,
    /// `P`: the proxy refused the request (a bad request, a limit) or stopped it (shutdown).
    Proxy,
    /// `c`: the client's timeout (`timeout client`, `timeout http-request`).
    ClientTimeout,
    /// `s`: the server's timeout (`timeout connect`, `timeout server`, `timeout queue`).
    ServerTimeout,
    /// `L`: the proxy answered itself and the request never went to a server (a redirect).
    Local,
}

/// The phase it was in (the second letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `-`: none; it ended normally.
    Normal,
    /// `R`: waiting for (or checking) the client's request.
    Request,
    /// `Q`: waiting in the backend's queue for a server's slot.
    Queue,
    /// `C`: connecting to the server.
    Connect,
    /// `H`: waiting for the server's response head.
    Headers,
    /// `D`: moving data (a body, a tunnel, a TCP session).
    Data,
    /// `T`: held by an `http-request tarpit` rule (HAProxy's "tarpitted").
    Tarpit,
}

/// A termination state: who ended the exchange and in which phase; shows as HAProxy's
/// two letters (`SC`, `sQ`, `--`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Termination {
    /// Who ended it.
    pub by: EndedBy,
    /// In which phase.
    pub phase: Phase,
}

impl Termination {
    /// `--`: a normal end.
    pub const NORMAL: Termination = Termination::new(EndedBy::Normal, Phase::Normal);

    /// Ended by `by` in `phase`.
    pub const fn new(by: EndedBy, phase: Phase) -> Termination {
        Termination { by, phase }
    }

    /// The two letters.
    pub fn code(self) -> [char; 2] {
        let by = match self.by {
            EndedBy::Normal => '-',
            EndedBy::Client => 'C',
            EndedBy::Server => 'S',
            EndedBy::Proxy => 'P',
            EndedBy::ClientTimeout => 'c',
            EndedBy::ServerTimeout => 's',
            EndedBy::Local => 'L',
        };
        let phase = match self.phase {
            Phase::Normal => '-',
            Phase::Request => 'R',
            Phase::Queue => 'Q',
            Phase::Connect => 'C',
            Phase::Headers => 'H',
            Phase::Data => 'D',
            Phase::Tarpit => 'T',
        };
        [by, phase]
    }
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b] = self.code();
        write!(f, "{a}{b}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_haproxy_letters() {
        let t = |by, phase| Termination::new(by, phase).to_string();
        assert_eq!(Termination::NORMAL.to_string(), "--");
        assert_eq!(t(EndedBy::Server, Phase::Connect), "SC");
        assert_eq!(t(EndedBy::ServerTimeout, Phase::Queue), "sQ");
        assert_eq!(t(EndedBy::ServerTimeout, Phase::Headers), "sH");
        assert_eq!(t(EndedBy::Proxy, Phase::Request), "PR");
        assert_eq!(t(EndedBy::ClientTimeout, Phase::Request), "cR");
        assert_eq!(t(EndedBy::Client, Phase::Data), "CD");
        assert_eq!(t(EndedBy::Proxy, Phase::Data), "PD");
        assert_eq!(t(EndedBy::Proxy, Phase::Tarpit), "PT");
    }
}
