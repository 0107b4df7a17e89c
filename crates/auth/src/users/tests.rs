use super::*;
use crate::basic::header;

fn file(hash: &str) -> Users {
    let text = format!(
        r#"[
          {{"username": "alice", "password": "clear-pw", "perms": ["all"]}},
          {{"username": "bob", "password": "{hash}", "perms": ["query", "backup", "future-perm"]}},
          {{"username": "*", "perms": ["status", "ready"]}}
        ]"#
    );
    Users::from_json(text.as_bytes()).unwrap()
}

#[test]
fn clear_and_bcrypt_passwords_both_work_as_rqlite_reads_them() {
    let hash = bcrypt::hash("bob-pw", 4).unwrap();
    let users = file(&hash);
    assert!(users.has_user("alice") && users.has_user("bob"));
    let alice = header("alice", "clear-pw");
    assert_eq!(
        users.authorize(Some(&alice), Perm::Execute).unwrap().user,
        Some("alice".into())
    );
    let bob = header("bob", "bob-pw");
    assert!(users.needs_bcrypt(Some(&bob)), "not verified yet");
    assert!(users.authorize(Some(&bob), Perm::Query).is_ok());
    assert!(!users.needs_bcrypt(Some(&bob)), "remembered after bcrypt");
    assert!(users.authorize(Some(&bob), Perm::Backup).is_ok());
    // The stored hash itself is not a password that opens the account (rqlite compares in
    // clear first; webfarm only bcrypt-verifies a hash); a different password is refused.
    let the_hash = header("bob", &hash);
    assert_eq!(
        users.authorize(Some(&the_hash), Perm::Query),
        Err(Refusal::BadPassword("bob".into()))
    );
    let wrong = header("bob", "bob-pw2");
    assert!(
        users.needs_bcrypt(Some(&wrong)),
        "a wrong password is not remembered"
    );
    assert_eq!(
        users.authorize(Some(&wrong), Perm::Query),
        Err(Refusal::BadPassword("bob".into()))
    );
}

#[test]
fn each_permission_is_enforced() {
    let users = file(&bcrypt::hash("x", 4).unwrap());
    let bob = header("bob", "x");
    assert_eq!(
        users.authorize(Some(&bob), Perm::Execute),
        Err(Refusal::Forbidden {
            user: "bob".into(),
            perm: "execute"
        })
    );
    for perm in [Perm::Load, Perm::Join, Perm::Remove, Perm::LeaderOps] {
        assert!(users.authorize(Some(&bob), perm).is_err(), "{perm:?}");
    }
    let alice = header("alice", "clear-pw");
    for perm in Perm::EVERY {
        assert!(
            users.authorize(Some(&alice), perm).is_ok(),
            "all holds {perm:?}"
        );
    }
}

#[test]
fn the_star_user_opens_its_permissions_to_anonymous_callers() {
    let users = file(&bcrypt::hash("x", 4).unwrap());
    assert_eq!(
        users.authorize(None, Perm::Ready),
        Ok(Caller { user: None })
    );
    assert!(users.authorize(None, Perm::Status).is_ok());
    assert_eq!(
        users.authorize(None, Perm::Query),
        Err(Refusal::NoCredentials)
    );
    let bearer = HeaderValue::from_static("Bearer abc");
    assert_eq!(
        users.authorize(Some(&bearer), Perm::Query),
        Err(Refusal::NoCredentials)
    );
    assert_eq!(
        users.authorize(Some(&header("mallory", "x")), Perm::Query),
        Err(Refusal::UnknownUser("mallory".into()))
    );
}

#[test]
fn bad_files_are_refused_with_the_reason() {
    let e = Users::from_json(b"{\"username\": \"a\"}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected a JSON list"), "{e}");
    let e = Users::from_json(br#"[{"username": "a"}, {"username": "a"}]"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("listed twice"), "{e}");
    let e = Users::from_json(br#"[{"password": "a"}]"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("username"), "{e}");
}

#[test]
fn refusal_reasons_label_the_metric() {
    assert_eq!(Refusal::NoCredentials.reason(), "no_credentials");
    assert!(Refusal::BadPassword("u".into()).challenge());
    let forbidden = Refusal::Forbidden {
        user: "u".into(),
        perm: "load",
    };
    assert_eq!(forbidden.reason(), "forbidden");
    assert!(!forbidden.challenge());
}

/// Figures, not a check: what one authorization costs with bcrypt and once remembered.
/// `cargo test -p webfarm-auth --release -- --ignored --nocapture cost_of`
#[test]
#[ignore = "a measurement: run by hand with --release"]
fn cost_of_bcrypt_and_of_a_remembered_password() {
    let hash = bcrypt::hash("pw", crate::secrets::BCRYPT_COST).unwrap();
    let users = Users::from_json(
        format!(r#"[{{"username": "web", "password": "{hash}", "perms": ["query"]}}]"#).as_bytes(),
    )
    .unwrap();
    let h = header("web", "pw");
    let t = std::time::Instant::now();
    users.authorize(Some(&h), Perm::Query).unwrap();
    let first = t.elapsed();
    let n = 100_000u32;
    let t = std::time::Instant::now();
    for _ in 0..n {
        users.authorize(Some(&h), Perm::Query).unwrap();
    }
    let each = t.elapsed() / n;
    println!(
        "bcrypt cost {}: first authorization {first:?}, remembered {each:?} each ({:.0}x)",
        crate::secrets::BCRYPT_COST,
        first.as_secs_f64() / each.as_secs_f64()
    );
}

#[test]
fn a_named_user_is_needed_where_the_star_user_does_not_count() {
    let users = Users::from_json(
        br#"[
          {"username": "ops", "password": "ops-pw", "perms": ["join"]},
          {"username": "reader", "password": "r", "perms": ["query"]},
          {"username": "*", "perms": ["all"]}
        ]"#,
    )
    .unwrap();
    // "*" holds everything through authorize...
    let junk = HeaderValue::from_static("Bearer junk");
    assert!(users.authorize(Some(&junk), Perm::Join).is_ok());
    // ...but not through authorize_user: only a verified named user holding the permission.
    assert_eq!(
        users.authorize_user(Some(&junk), Perm::Join),
        Err(Refusal::NoCredentials)
    );
    assert_eq!(
        users.authorize_user(None, Perm::Join),
        Err(Refusal::NoCredentials)
    );
    assert_eq!(
        users.authorize_user(Some(&header("*", "")), Perm::Join),
        Err(Refusal::UnknownUser("*".into()))
    );
    assert_eq!(
        users.authorize_user(Some(&header("ops", "nope")), Perm::Join),
        Err(Refusal::BadPassword("ops".into()))
    );
    assert!(users
        .authorize_user(Some(&header("reader", "r")), Perm::Join)
        .is_err());
    assert_eq!(
        users
            .authorize_user(Some(&header("ops", "ops-pw")), Perm::Join)
            .unwrap()
            .user,
        Some("ops".into())
    );
}

#[test]
fn an_unknown_user_and_a_wrong_password_read_the_same() {
    assert_eq!(
        Refusal::UnknownUser("mallory".into()).to_string(),
        "invalid credentials"
    );
    assert_eq!(
        Refusal::BadPassword("bob".into()).to_string(),
        "invalid credentials"
    );
}

#[test]
fn an_unknown_user_pays_for_a_bcrypt_check_when_the_file_holds_hashes() {
    let cheap = bcrypt::hash("x", 4).unwrap();
    let dear = bcrypt::hash("y", 8).unwrap();
    assert_eq!((bcrypt_cost(&cheap), bcrypt_cost(&dear)), (4, 8));
    let users = Users::from_json(
        format!(
            r#"[{{"username": "a", "password": "{cheap}", "perms": ["query"]}},
                {{"username": "b", "password": "{dear}", "perms": ["query"]}},
                {{"username": "c", "password": "clear", "perms": ["query"]}}]"#
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(users.decoy.as_deref(), Some(dear.as_str()), "the costliest");
    let mallory = header("mallory", "guess");
    assert!(
        users.needs_bcrypt(Some(&mallory)),
        "run off the async runtime"
    );
    let t = std::time::Instant::now();
    assert_eq!(
        users.authorize(Some(&mallory), Perm::Query),
        Err(Refusal::UnknownUser("mallory".into()))
    );
    // Cost 8 is 256 rounds of bcrypt's key schedule: milliseconds even on a fast machine,
    // where a map lookup alone takes well under one.
    let took = t.elapsed();
    assert!(took >= std::time::Duration::from_millis(2), "{took:?}");
    // A known user's wrong clear password pays the same; the right one does not.
    assert!(users.needs_bcrypt(Some(&header("c", "wrong"))));
    assert!(!users.needs_bcrypt(Some(&header("c", "clear"))));
    let t = std::time::Instant::now();
    assert_eq!(
        users.authorize(Some(&header("c", "wrong")), Perm::Query),
        Err(Refusal::BadPassword("c".into()))
    );
    let took = t.elapsed();
    assert!(took >= std::time::Duration::from_millis(2), "{took:?}");
    // A file without hashes has nothing to hide behind: no bcrypt at all.
    let clear = Users::from_json(br#"[{"username": "c", "password": "p", "perms": []}]"#).unwrap();
    assert!(clear.decoy.is_none());
    assert!(!clear.needs_bcrypt(Some(&mallory)));
}

#[test]
fn a_remembered_password_stays_remembered() {
    // bcrypt reads 72 bytes: longer passwords sharing them all verify.
    let base = "p".repeat(72);
    let hash = bcrypt::hash(&base, 4).unwrap();
    let users = file(&hash);
    let variants: Vec<String> = (0..6).map(|i| format!("{base}{i}")).collect();
    for v in &variants {
        assert!(users
            .authorize(Some(&header("bob", v)), Perm::Query)
            .is_ok());
    }
    // The first four stay remembered, whatever was verified after them; the others are
    // verified again each time.
    for (i, v) in variants.iter().enumerate() {
        assert_eq!(users.needs_bcrypt(Some(&header("bob", v))), i >= 4, "{i}");
    }
}
