use super::*;

const ME: &str = "10.0.0.2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn router(priority: u8, preempt: bool) -> Router {
    Router::new(Params {
        priority,
        advert_int: 100,
        preempt,
        preempt_delay: None,
        primary: ip(ME),
    })
}

fn advert(priority: u8, max_adver_int: u16, source: &str) -> Event {
    Event::Advert {
        priority,
        max_adver_int,
        source: ip(source),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn transition(from: State, to: State, reason: Reason) -> Action {
    Action::Transition { from, to, reason }
}

/// Drives a router to master (through the master down timer) or leaves it in backup.
fn started(priority: u8, preempt: bool, master: bool) -> Router {
    let mut r = router(priority, preempt);
    r.handle(Event::Startup);
    if master {
        r.handle(Event::Timer(Timer::MasterDown));
    }
    r
}

#[test]
fn skew_and_master_down_interval_follow_section_6_1() {
    // (priority, Master_Adver_Interval cs, Skew_Time, Master_Down_Interval)
    let rows = [
        (
            100,
            100,
            ms(609) + Duration::from_micros(375),
            ms(3609) + Duration::from_micros(375),
        ),
        (
            200,
            100,
            ms(218) + Duration::from_micros(750),
            ms(3218) + Duration::from_micros(750),
        ),
        (
            255,
            100,
            Duration::from_micros(3906),
            ms(3003) + Duration::from_micros(906),
        ),
        (
            1,
            100,
            ms(996) + Duration::from_micros(93),
            ms(3996) + Duration::from_micros(93),
        ),
        (
            200,
            10,
            Duration::from_micros(21875),
            ms(321) + Duration::from_micros(875),
        ),
        (
            100,
            10,
            Duration::from_micros(60937),
            ms(360) + Duration::from_micros(937),
        ),
    ];
    for (p, cs, skew, down) in rows {
        assert_eq!(skew_time(p, cs), skew, "skew p={p} cs={cs}");
        assert_eq!(master_down_interval(p, cs), down, "down p={p} cs={cs}");
    }
}

#[test]
fn startup_per_section_6_4_1() {
    let mut owner = router(255, true);
    assert_eq!(
        owner.handle(Event::Startup),
        vec![
            Action::Send { priority: 255 },
            Action::TakeVips,
            Action::SetTimer(Timer::Adver, ms(1000)),
            transition(State::Initialize, State::Master, Reason::AddressOwner),
        ]
    );
    assert_eq!(owner.master(), Some(ip(ME)));
    let mut backup = router(100, true);
    assert_eq!(
        backup.handle(Event::Startup),
        vec![
            Action::SetTimer(Timer::MasterDown, master_down_interval(100, 100)),
            transition(State::Initialize, State::Backup, Reason::Startup),
        ]
    );
    assert_eq!(backup.state(), State::Backup);
    assert_eq!(backup.master(), None);
    // Nothing but Startup moves a router out of Initialize.
    let mut idle = router(100, true);
    for e in [
        Event::Shutdown,
        Event::Timer(Timer::MasterDown),
        advert(200, 100, "10.0.0.9"),
    ] {
        assert!(idle.handle(e).is_empty());
        assert_eq!(idle.state(), State::Initialize);
    }
}

#[test]
fn backup_handles_advertisements_per_section_6_4_2() {
    // (own priority, preempt, advert priority, expected actions, master learnt)
    let down = |p, cs| Action::SetTimer(Timer::MasterDown, master_down_interval(p, cs));
    type Row = (u8, bool, u8, Vec<Action>, Option<&'static str>);
    let rows: Vec<Row> = vec![
        // Priority 0: the master leaves; wait only Skew_Time.
        (
            100,
            true,
            0,
            vec![Action::SetTimer(Timer::MasterDown, skew_time(100, 100))],
            None,
        ),
        // Higher priority: learn its interval (50 cs), reset the timer.
        (100, true, 200, vec![down(100, 50)], Some("10.0.0.9")),
        // Equal priority counts as "greater than or equal": accepted.
        (100, true, 100, vec![down(100, 50)], Some("10.0.0.9")),
        // Lower priority with preemption: discarded, the timer runs out.
        (200, true, 100, vec![], None),
        // Lower priority without preemption: accepted as master.
        (200, false, 100, vec![down(200, 50)], Some("10.0.0.9")),
    ];
    for (mine, preempt, theirs, actions, master) in rows {
        let mut r = started(mine, preempt, false);
        let got = r.handle(advert(theirs, 50, "10.0.0.9"));
        assert_eq!(
            got, actions,
            "mine={mine} preempt={preempt} theirs={theirs}"
        );
        assert_eq!(r.state(), State::Backup);
        assert_eq!(r.master(), master.map(ip));
        if master.is_some() {
            assert_eq!(r.master_adver_int(), 50, "Master_Adver_Interval learnt");
        }
    }
}

#[test]
fn backup_becomes_master_when_the_master_down_timer_fires() {
    let mut r = started(100, true, false);
    r.handle(advert(200, 100, "10.0.0.9"));
    assert_eq!(
        r.handle(Event::Timer(Timer::MasterDown)),
        vec![
            Action::CancelTimer(Timer::MasterDown),
            Action::Send { priority: 100 },
            Action::TakeVips,
            Action::SetTimer(Timer::Adver, ms(1000)),
            transition(State::Backup, State::Master, Reason::MasterDown),
        ]
    );
    assert_eq!(r.master(), Some(ip(ME)));
    // After a priority-0 advertisement the reason says the master left.
    let mut r = started(100, true, false);
    r.handle(advert(200, 100, "10.0.0.9"));
    r.handle(advert(0, 100, "10.0.0.9"));
    let got = r.handle(Event::Timer(Timer::MasterDown));
    assert!(got.contains(&transition(
        State::Backup,
        State::Master,
        Reason::MasterLeft
    )));
}

#[test]
fn master_handles_advertisements_per_section_6_4_3() {
    let yields = |cs| {
        vec![
            Action::CancelTimer(Timer::Adver),
            Action::ReleaseVips,
            Action::SetTimer(Timer::MasterDown, master_down_interval(100, cs)),
            transition(State::Master, State::Backup, Reason::HigherPriority),
        ]
    };
    // (advert priority, source, expected actions, state after)
    let rows: Vec<(u8, &str, Vec<Action>, State)> = vec![
        // Priority 0 from a leaving router: advertise at once.
        (
            0,
            "10.0.0.9",
            vec![
                Action::Send { priority: 100 },
                Action::SetTimer(Timer::Adver, ms(1000)),
            ],
            State::Master,
        ),
        (200, "10.0.0.1", yields(30), State::Backup),
        // Equal priority: the higher primary address wins.
        (100, "10.0.0.9", yields(30), State::Backup),
        (
            100,
            "10.0.0.1",
            vec![Action::Send { priority: 100 }, Action::Announce],
            State::Master,
        ),
        // Lower priority: a second master (it was paused or cut off): advertise at once and
        // announce the VIPs again, as keepalived does; the sender becomes a backup.
        (
            50,
            "10.0.0.9",
            vec![Action::Send { priority: 100 }, Action::Announce],
            State::Master,
        ),
    ];
    for (theirs, source, actions, state) in rows {
        let mut r = started(100, true, true);
        assert_eq!(
            r.handle(advert(theirs, 30, source)),
            actions,
            "{theirs} from {source}"
        );
        assert_eq!(r.state(), state);
        if state == State::Backup {
            assert_eq!(r.master(), Some(ip(source)));
            assert_eq!(r.master_adver_int(), 30);
        }
    }
}

#[test]
fn master_advertises_on_every_adver_timer() {
    let mut r = started(100, true, true);
    for _ in 0..3 {
        assert_eq!(
            r.handle(Event::Timer(Timer::Adver)),
            vec![
                Action::Send { priority: 100 },
                Action::SetTimer(Timer::Adver, ms(1000))
            ]
        );
    }
}

#[test]
fn shutdown_sends_priority_zero_from_master_only() {
    let mut m = started(100, true, true);
    assert_eq!(
        m.handle(Event::Shutdown),
        vec![
            Action::CancelTimer(Timer::Adver),
            Action::Send { priority: 0 },
            Action::ReleaseVips,
            transition(State::Master, State::Initialize, Reason::Shutdown),
        ]
    );
    assert_eq!(m.state(), State::Initialize);
    let mut b = started(100, true, false);
    assert_eq!(
        b.handle(Event::Shutdown),
        vec![
            Action::CancelTimer(Timer::MasterDown),
            transition(State::Backup, State::Initialize, Reason::Shutdown),
        ]
    );
}

#[test]
fn preempt_delay_holds_preemption_after_startup() {
    let mut r = Router::new(Params {
        priority: 200,
        advert_int: 100,
        preempt: true,
        preempt_delay: Some(Duration::from_secs(5)),
        primary: ip(ME),
    });
    let got = r.handle(Event::Startup);
    assert_eq!(
        got[0],
        Action::SetTimer(Timer::PreemptDelay, Duration::from_secs(5))
    );
    // A lower-priority master is followed while the delay runs...
    let got = r.handle(advert(100, 100, "10.0.0.9"));
    assert_eq!(
        got,
        vec![Action::SetTimer(
            Timer::MasterDown,
            master_down_interval(200, 100)
        )]
    );
    // ...and preempted after it.
    r.handle(Event::Timer(Timer::PreemptDelay));
    assert!(r.handle(advert(100, 100, "10.0.0.9")).is_empty());
    assert_eq!(
        r.handle(Event::Timer(Timer::MasterDown)).last(),
        Some(&transition(
            State::Backup,
            State::Master,
            Reason::MasterDown
        ))
    );
}

#[test]
fn active_active_pair_settles_with_one_master() {
    // Two routers exchanging adverts through a perfect link: the higher priority ends master
    // whichever starts first.
    for first_is_high in [true, false] {
        let mut high = Router::new(Params {
            primary: ip("10.0.0.1"),
            ..router(200, true).params().clone()
        });
        let mut low = Router::new(Params {
            primary: ip("10.0.0.2"),
            ..router(100, true).params().clone()
        });
        let (a, b) = if first_is_high {
            (&mut high, &mut low)
        } else {
            (&mut low, &mut high)
        };
        a.handle(Event::Startup);
        a.handle(Event::Timer(Timer::MasterDown));
        b.handle(Event::Startup);
        let (pa, sa) = (a.params().priority, a.params().primary);
        b.handle(Event::Advert {
            priority: pa,
            max_adver_int: 100,
            source: sa,
        });
        if b.params().priority > pa {
            b.handle(Event::Timer(Timer::MasterDown));
            let (pb, sb) = (b.params().priority, b.params().primary);
            a.handle(Event::Advert {
                priority: pb,
                max_adver_int: 100,
                source: sb,
            });
        }
        assert_eq!(high.state(), State::Master);
        assert_eq!(low.state(), State::Backup);
        assert_eq!(low.master(), Some(ip("10.0.0.1")));
    }
}
