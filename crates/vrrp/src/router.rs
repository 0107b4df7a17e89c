//! The virtual router's state machine, exactly as RFC 5798 §6.4 writes it, as a pure
//! struct: [`Router::handle`] takes an [`Event`] and returns the [`Action`]s to carry out.
//! No clock, no socket: the caller owns the timers and the packets, so every case of the
//! RFC is a table row in the tests.

use std::net::IpAddr;
use std::time::Duration;

/// The three states of §6.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting for a Startup event (§6.4.1).
    Initialize,
    /// Monitoring the master (§6.4.2).
    Backup,
    /// Forwarding for the virtual router's addresses (§6.4.3).
    Master,
}

impl State {
    /// Every state, in [`State::index`] order.
    pub const ALL: [State; 3] = [State::Initialize, State::Backup, State::Master];

    /// The state's position in [`State::ALL`] (per-state counters are arrays of 3).
    pub fn index(self) -> usize {
        match self {
            State::Initialize => 0,
            State::Backup => 1,
            State::Master => 2,
        }
    }

    /// `init`, `backup` or `master`, as `/status` and the metrics write it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "init",
            State::Backup => "backup",
            State::Master => "master",
        }
    }
}

/// The router's timers (§6.2); the caller runs them and reports them with
/// [`Event::Timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Adver_Timer: time to send the next advertisement (master).
    Adver,
    /// Master_Down_Timer: the master is presumed dead when it fires (backup).
    MasterDown,
    /// keepalived's `preempt_delay`: until it fires, a backup does not preempt a master of
    /// lower priority after startup.
    PreemptDelay,
}

/// What happens to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The router starts (§6.4.1).
    Startup,
    /// The router stops (§6.4.2, §6.4.3).
    Shutdown,
    /// A valid advertisement of this VRID arrived (already checked per §7.1).
    Advert {
        /// The sender's priority.
        priority: u8,
        /// Its Max Adver Int, in centiseconds.
        max_adver_int: u16,
        /// Its primary IP address (the packet's source).
        source: IpAddr,
    },
    /// A timer set by an [`Action::SetTimer`] fired.
    Timer(Timer),
}

/// Why the router changed state, for the log (keepalived's words where it has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Priority 255: the address owner becomes master at startup.
    AddressOwner,
    /// Startup with a lower priority: wait for the master.
    Startup,
    /// No advertisement within the Master_Down_Interval.
    MasterDown,
    /// The master sent priority 0 and its Skew_Time passed.
    MasterLeft,
    /// A higher priority (or equal priority and a higher address) advertised.
    HigherPriority,
    /// Shutdown.
    Shutdown,
}

impl Reason {
    /// One line for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AddressOwner => "priority 255: address owner",
            Reason::Startup => "startup",
            Reason::MasterDown => "no advertisement within the master down interval",
            Reason::MasterLeft => "the master left (priority 0 advertisement)",
            Reason::HigherPriority => "received an advertisement with higher priority",
            Reason::Shutdown => "shutdown",
        }
    }
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority (0 when leaving, §6.4.3).
    Send {
        /// The priority to advertise.
        priority: u8,
    },
    /// Take the virtual addresses: add/bind them, send gratuitous ARP / unsolicited NA.
    TakeVips,
    /// Release the virtual addresses.
    ReleaseVips,
    /// Announce the held addresses again (gratuitous ARP / unsolicited NA): another router
    /// believes it is master (it advertised a lower priority while we were master, e.g. after
    /// this one was paused or partitioned away), so hosts may have learnt its link address.
    /// keepalived does the same (`garp_lower_prio_repeat`); RFC 5798 §6.4.3 only discards it.
    Announce,
    /// (Re)start a timer to fire after this long.
    SetTimer(Timer, Duration),
    /// Stop a timer.
    CancelTimer(Timer),
    /// The state changed: log it, count it.
    Transition {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// Why.
        reason: Reason,
    },
}

/// The router's configuration (§6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// This router's priority, 1..=255 (255: the address owner).
    pub priority: u8,
    /// Advertisement_Interval in centiseconds (1..=4095).
    pub advert_int: u16,
    /// Preempt_Mode: a higher-priority backup takes over from a lower-priority master.
    pub preempt: bool,
    /// keepalived's `preempt_delay`: after startup, do not preempt for this long.
    pub preempt_delay: Option<Duration>,
    /// This router's primary address (the tie-break of §6.4.3).
    pub primary: IpAddr,
}

/// One virtual router's protocol state (§6.1, §6.2).
#[derive(Debug, Clone)]
pub struct Router {
    params: Params,
    state: State,
    /// Master_Adver_Interval, centiseconds: learnt from the master when backup.
    master_adver_int: u16,
    /// The current master's address, when known.
    master: Option<IpAddr>,
    /// True between startup and the preempt delay's end.
    holding_preemption: bool,
    /// The master sent priority 0 and the Master_Down_Timer now runs for Skew_Time.
    master_left: bool,
}

/// `centiseconds × (256 − priority) / 256`, as a duration: Skew_Time (§6.1).
pub fn skew_time(priority: u8, master_adver_int: u16) -> Duration {
    let micros = u64::from(master_adver_int) * 10_000 * (256 - u64::from(priority)) / 256;
    Duration::from_micros(micros)
}

/// `3 × Master_Adver_Interval + Skew_Time` (§6.1).
pub fn master_down_interval(priority: u8, master_adver_int: u16) -> Duration {
    centis(master_adver_int) * 3 + skew_time(priority, master_adver_int)
}

fn centis(cs: u16) -> Duration {
    Duration::from_millis(u64::from(cs) * 10)
}

impl Router {
    /// A router in Initialize with `params`.
    pub fn new(params: Params) -> Router {
        Router {
            master_adver_int: params.advert_int,
            params,
            state: State::Initialize,
            master: None,
            holding_preemption: false,
            master_left: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The current master's address: this router's own when master, the last advertiser's
    /// when backup, `None` when unknown.
    pub fn master(&self) -> Option<IpAddr> {
        self.master
    }

    /// Master_Adver_Interval in centiseconds.
    pub fn master_adver_int(&self) -> u16 {
        self.master_adver_int
    }

    fn down_interval(&self) -> Duration {
        master_down_interval(self.params.priority, self.master_adver_int)
    }

    /// Applies `event` and returns what to do (§6.4).
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        match (self.state, event) {
            (State::Initialize, Event::Startup) => self.startup(),
            (State::Initialize, _) => Vec::new(),
            (State::Backup, Event::Shutdown) => self.leave_backup(),
            (State::Backup, Event::Timer(Timer::MasterDown)) => {
                let reason = match self.master {
                    Some(_) if self.master_left => Reason::MasterLeft,
                    _ => Reason::MasterDown,
                };
                self.become_master(reason)
            }
            (
                State::Backup,
                Event::Advert {
                    priority,
                    max_adver_int,
                    source,
                },
            ) => self.backup_advert(priority, max_adver_int, source),
            (State::Master, Event::Shutdown) => self.leave_master(),
            (State::Master, Event::Timer(Timer::Adver)) => self.advertise(),
            (
                State::Master,
                Event::Advert {
                    priority,
                    max_adver_int,
                    source,
                },
            ) => self.master_advert(priority, max_adver_int, source),
            (_, Event::Timer(Timer::PreemptDelay)) => {
                self.holding_preemption = false;
                Vec::new()
            }
            // A stale timer (already cancelled by the caller's clock race), or Startup twice.
            (_, _) => Vec::new(),
        }
    }
}

/// The transitions and the advertisement handling of §6.4.1–§6.4.3.
impl Router {
    /// §6.4.1: the owner becomes master at once; any other router becomes backup.
    fn startup(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(delay) = self.params.preempt_delay.filter(|d| !d.is_zero()) {
            self.holding_preemption = true;
            out.push(Action::SetTimer(Timer::PreemptDelay, delay));
        }
        if self.params.priority == 255 {
            out.extend(self.become_master_from(State::Initialize, Reason::AddressOwner));
            return out;
        }
        self.master_adver_int = self.params.advert_int;
        self.state = State::Backup;
        self.master = None;
        out.push(Action::SetTimer(Timer::MasterDown, self.down_interval()));
        out.push(Action::Transition {
            from: State::Initialize,
            to: State::Backup,
            reason: Reason::Startup,
        });
        out
    }

    /// §6.4.2, Master_Down_Timer fired: send an advertisement, take the addresses.
    fn become_master(&mut self, reason: Reason) -> Vec<Action> {
        let mut out = vec![Action::CancelTimer(Timer::MasterDown)];
        out.extend(self.become_master_from(State::Backup, reason));
        out
    }

    fn become_master_from(&mut self, from: State, reason: Reason) -> Vec<Action> {
        self.state = State::Master;
        self.master = Some(self.params.primary);
        self.master_left = false;
        vec![
            Action::Send {
                priority: self.params.priority,
            },
            Action::TakeVips,
            Action::SetTimer(Timer::Adver, centis(self.params.advert_int)),
            Action::Transition {
                from,
                to: State::Master,
                reason,
            },
        ]
    }

    /// §6.4.2, an advertisement while backup.
    fn backup_advert(&mut self, priority: u8, adver_int: u16, source: IpAddr) -> Vec<Action> {
        if priority == 0 {
            self.master_left = true;
            let skew = skew_time(self.params.priority, self.master_adver_int);
            return vec![Action::SetTimer(Timer::MasterDown, skew)];
        }
        let lower = priority < self.params.priority;
        if self.params.preempt && lower && !self.holding_preemption {
            // Discard: the Master_Down_Timer runs out and this router preempts.
            return Vec::new();
        }
        self.master_adver_int = adver_int.max(1);
        self.master = Some(source);
        self.master_left = false;
        vec![Action::SetTimer(Timer::MasterDown, self.down_interval())]
    }

    /// §6.4.3, an advertisement while master.
    fn master_advert(&mut self, priority: u8, adver_int: u16, source: IpAddr) -> Vec<Action> {
        if priority == 0 {
            return self.advertise();
        }
        let mine = self.params.priority;
        let wins = priority > mine || (priority == mine && ip_greater(source, self.params.primary));
        if !wins {
            // Two masters: advertise now, so the other becomes a backup at once (§6.4.3 has
            // it wait for our next advertisement), and take the hosts' ARP caches back.
            return vec![Action::Send { priority: mine }, Action::Announce];
        }
        self.master_adver_int = adver_int.max(1);
        self.state = State::Backup;
        self.master = Some(source);
        vec![
            Action::CancelTimer(Timer::Adver),
            Action::ReleaseVips,
            Action::SetTimer(Timer::MasterDown, self.down_interval()),
            Action::Transition {
                from: State::Master,
                to: State::Backup,
                reason: Reason::HigherPriority,
            },
        ]
    }

    fn advertise(&mut self) -> Vec<Action> {
        vec![
            Action::Send {
                priority: self.params.priority,
            },
            Action::SetTimer(Timer::Adver, centis(self.params.advert_int)),
        ]
    }

    /// §6.4.2 Shutdown: stop the timer, back to Initialize.
    fn leave_backup(&mut self) -> Vec<Action> {
        self.state = State::Initialize;
        self.master = None;
        vec![
            Action::CancelTimer(Timer::MasterDown),
            Action::Transition {
                from: State::Backup,
                to: State::Initialize,
                reason: Reason::Shutdown,
            },
        ]
    }

    /// §6.4.3 Shutdown: advertise priority 0 so a backup takes over after its Skew_Time,
    /// release the addresses, back to Initialize.
    fn leave_master(&mut self) -> Vec<Action> {
        self.state = State::Initialize;
        self.master = None;
        vec![
            Action::CancelTimer(Timer::Adver),
            Action::Send { priority: 0 },
            Action::ReleaseVips,
            Action::Transition {
                from: State::Master,
                to: State::Initialize,
                reason: Reason::Shutdown,
            },
        ]
    }
}

/// The tie-break of §6.4.3: the higher primary address wins, compared as unsigned integers
/// in network byte order. Mixed families never meet (one router speaks one family).
fn ip_greater(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets() > b.octets(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets() > b.octets(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
