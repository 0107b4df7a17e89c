//! The text of ACL lines, conditions and rules, in HAProxy's syntax: words separated by
//! spaces (quotes and `\` escapes keep spaces in a word), `{ ... }` for an anonymous ACL.
//! Pure functions of the text, so a fuzz target can call [`parse_rules`] directly.

use std::collections::HashMap;

use crate::net::parse_net;

use super::{
    AccessRules, Acl, AclTest, Condition, Counter, Fetch, HttpAction, HttpRule, IntTest, Pattern,
    Redirect, RedirectKind, StickTableSpec, StrMatch, StrPattern, TcpAction, TcpRule, Term,
    DENY_STATUSES,
};

/// A frontend's access rules as written: one string per line of each list, as HAProxy's
/// `acl`, `tcp-request connection` and `http-request` lines without their keyword, and the
/// stick table already read.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleText<'a> {
    /// `acl` lines: `<name> <fetch> [flags] [operator] <value>...`.
    pub acl: &'a [String],
    /// `tcp-request connection` lines: `<action> [if|unless <condition>]`.
    pub tcp_request_connection: &'a [String],
    /// `http-request` lines: `<action> [options] [if|unless <condition>]`.
    pub http_request: &'a [String],
    /// The stick table, if the frontend has one.
    pub stick_table: Option<&'a StickTableSpec>,
}

/// Parses and checks a frontend's rules: every ACL a condition names exists, every fetch
/// is available where it is used (no request fetch in a `tcp-request connection` rule,
/// no stick-table counter the table does not store).
///
/// # Errors
///
/// Every problem found, each starting with the key of its line (`acl[2]: ...`,
/// `http_request[0]: ...`).
pub fn parse_rules(text: &RuleText<'_>) -> Result<AccessRules, Vec<String>> {
    let mut problems = Vec::new();
    let mut p = Parser {
        acls: Vec::new(),
        names: HashMap::new(),
        table: text.stick_table,
    };
    for (i, line) in text.acl.iter().enumerate() {
        if let Err(e) = p.acl_line(line) {
            problems.push(format!("acl[{i}]: {e}"));
        }
    }
    let mut rules = AccessRules {
        stick_table: text.stick_table.cloned(),
        ..AccessRules::default()
    };
    for (i, line) in text.tcp_request_connection.iter().enumerate() {
        match p.tcp_rule(line) {
            Ok(rule) => rules.tcp_request_connection.push(rule),
            Err(e) => problems.push(format!("tcp_request_connection[{i}]: {e}")),
        }
    }
    for (i, line) in text.http_request.iter().enumerate() {
        match p.http_rule(line) {
            Ok(rule) => rules.http_request.push(rule),
            Err(e) => problems.push(format!("http_request[{i}]: {e}")),
        }
    }
    rules.acls = p.acls;
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

/// Splits a line into words: spaces separate, `"..."` and `'...'` keep spaces, `\x` is `x`.
///
/// # Errors
///
/// An unterminated quote, or a line ending in `\`.
pub(super) fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (_, '\\') => {
                let next = chars
                    .next()
                    .ok_or_else(|| "the line ends with a lone `\\`".to_string())?;
                cur.push(next);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated quote {q}"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// HAProxy's predefined ACLs that webfarm knows: `(name, fetch, values)`.
const PREDEFINED: [(&str, &str, &[&str]); 11] = [
    ("TRUE", "always_true", &[]),
    ("FALSE", "always_false", &[]),
    ("LOCALHOST", "src", &["127.0.0.0/8", "::1"]),
    ("METH_CONNECT", "method", &["CONNECT"]),
    ("METH_DELETE", "method", &["DELETE"]),
    ("METH_GET", "method", &["GET", "HEAD"]),
    ("METH_HEAD", "method", &["HEAD"]),
    ("METH_OPTIONS", "method", &["OPTIONS"]),
    ("METH_POST", "method", &["POST"]),
    ("METH_PUT", "method", &["PUT"]),
    ("METH_TRACE", "method", &["TRACE"]),
];

struct Parser<'a> {
    acls: Vec<Acl>,
    names: HashMap<String, usize>,
    table: Option<&'a StickTableSpec>,
}

impl Parser<'_> {
    /// One `acl` line: a new name, or another test ORed into an existing one.
    fn acl_line(&mut self, line: &str) -> Result<(), String> {
        let w = words(line)?;
        let Some((name, rest)) = w.split_first() else {
            return Err("empty; expected \"<name> <fetch> [flags] <value>...\"".into());
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
        if !name.chars().all(valid) {
            return Err(format!(
                "{name:?} is not an ACL name; use letters, digits, '-', '_', '.' and ':'"
            ));
        }
        if PREDEFINED.iter().any(|(p, _, _)| p == name) {
            return Err(format!(
                "{name:?} is one of HAProxy's predefined ACLs; choose another name"
            ));
        }
        let test = self.test(rest)?;
        match self.names.get(name) {
            Some(&i) => self.acls[i].tests.push(test),
            None => {
                self.names.insert(name.clone(), self.acls.len());
                self.acls.push(Acl {
                    name: name.clone(),
                    tests: vec![test],
                });
            }
        }
        Ok(())
    }

    /// `<fetch> [flags] [operator] <value>...`.
    fn test(&self, w: &[String]) -> Result<AclTest, String> {
        let Some((fetch_word, rest)) = w.split_first() else {
            return Err("no sample fetch; expected e.g. \"src 10.0.0.0/8\"".into());
        };
        let (fetch, derived) = parse_fetch(fetch_word)?;
        self.check_counter(&fetch)?;
        let mut ignore_case = false;
        let mut method: Option<&str> = None;
        let mut i = 0;
        while let Some(flag) = rest.get(i).filter(|f| f.starts_with('-')) {
            match flag.as_str() {
                "-i" => ignore_case = true,
                "-n" => {}
                "--" => {
                    i += 1;
                    break;
                }
                "-m" => {
                    i += 1;
                    method = Some(rest.get(i).ok_or("-m needs a match method")?);
                }
                "-f" => {
                    return Err(
                        "-f (patterns from a file) is not supported; list the values \
                                in the line"
                            .into(),
                    )
                }
                // A negative number is a value, not a flag.
                f if f[1..].starts_with(|c: char| c.is_ascii_digit()) => break,
                other => return Err(format!("unknown flag {other:?}; expected -i, -m or --")),
            }
            i += 1;
        }
        let values = &rest[i..];
        let kind = match_kind(&fetch, derived, method, fetch_word)?;
        let pattern = pattern(kind, ignore_case, values)?;
        Ok(AclTest { fetch, pattern })
    }

    /// A counter fetch needs a stick table that stores the counter.
    fn check_counter(&self, fetch: &Fetch) -> Result<(), String> {
        let (Fetch::Sc0(c) | Fetch::SrcCounter(c)) = fetch else {
            return Ok(());
        };
        match self.table {
            None => Err(format!(
                "{} needs a stick table: add stick_table = {{ type = \"ip\", size = \
                 \"100k\", expire = \"30s\", store = [...] }} to this frontend",
                c.as_str()
            )),
            Some(t) if !t.stores(*c) => Err(format!(
                "the stick table does not store {}; add it to stick_table.store",
                match c {
                    Counter::HttpReqRate => "http_req_rate(<period>)",
                    Counter::ConnRate => "conn_rate(<period>)",
                    other => other.as_str(),
                }
            )),
            Some(_) => Ok(()),
        }
    }

    /// `if|unless <terms>`.
    fn condition(&mut self, w: &[String], layer4: bool) -> Result<Condition, String> {
        let unless = w[0] == "unless";
        let mut any_of = vec![Vec::new()];
        let mut negated = false;
        let mut i = 1;
        while let Some(word) = w.get(i) {
            i += 1;
            let mut word = word.as_str();
            if word == "||" || word == "or" {
                if negated || any_of.last().is_some_and(Vec::is_empty) {
                    return Err(format!("{word:?} with nothing before it"));
                }
                any_of.push(Vec::new());
                continue;
            }
            if word == "!" {
                negated = !negated;
                continue;
            }
            if let Some(rest) = word.strip_prefix('!') {
                negated = !negated;
                word = rest;
            }
            let acl = if word == "{" {
                let end = w[i..].iter().position(|x| x == "}").ok_or(
                    "an anonymous ACL opened with `{` is not closed with `}` (braces are \
                     words of their own: \"{ src 10.0.0.0/8 }\")",
                )?;
                let test = self.test(&w[i..i + end])?;
                let name = format!("{{ {} }}", w[i..i + end].join(" "));
                i += end + 1;
                self.acls.push(Acl {
                    name,
                    tests: vec![test],
                });
                self.acls.len() - 1
            } else {
                self.acl_index(word)?
            };
            if layer4 {
                if let Some(t) = self.acls[acl].tests.iter().find(|t| t.is_layer7()) {
                    return Err(format!(
                        "ACL {:?} looks at the HTTP request ({:?}), which a tcp-request \
                         connection rule runs before; use it in http_request",
                        self.acls[acl].name, t.fetch
                    ));
                }
            }
            any_of
                .last_mut()
                .expect("never empty")
                .push(Term { negated, acl });
            negated = false;
        }
        if negated || any_of.iter().any(Vec::is_empty) {
            return Err(format!(
                "incomplete condition after {:?}; expected ACL names, `!name`, `||` or \
                 `{{ fetch value }}`",
                w[0]
            ));
        }
        Ok(Condition { unless, any_of })
    }

    /// The index of ACL `name`, adding a predefined one when first used.
    fn acl_index(&mut self, name: &str) -> Result<usize, String> {
        if let Some(&i) = self.names.get(name) {
            return Ok(i);
        }
        let Some((_, fetch, values)) = PREDEFINED.iter().find(|(p, _, _)| *p == name) else {
            let mut known: Vec<&str> = self.names.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(format!(
                "no ACL named {name:?}; declared: [{}] (and HAProxy's TRUE, FALSE, \
                 LOCALHOST, METH_*)",
                known.join(", ")
            ));
        };
        let mut line = vec![(*fetch).to_string()];
        line.extend(values.iter().map(|v| (*v).to_string()));
        let test = self.test(&line)?;
        self.names.insert(name.to_string(), self.acls.len());
        self.acls.push(Acl {
            name: name.to_string(),
            tests: vec![test],
        });
        Ok(self.acls.len() - 1)
    }

    /// Splits `line` at `if`/`unless`: the action's words and the condition.
    fn split_rule(&mut self, line: &str, layer4: bool) -> RuleParts {
        let w = words(line)?;
        let at = w.iter().position(|x| x == "if" || x == "unless");
        let (action, cond) = match at {
            Some(at) => (w[..at].to_vec(), Some(self.condition(&w[at..], layer4)?)),
            None => (w, None),
        };
        if action.is_empty() {
            return Err("no action; expected e.g. \"deny if blocked\"".into());
        }
        Ok((action, cond))
    }

    /// One `tcp-request connection` line.
    fn tcp_rule(&mut self, line: &str) -> Result<TcpRule, String> {
        let (w, cond) = self.split_rule(line, true)?;
        let action = match w[0].as_str() {
            "accept" | "reject" if w.len() > 1 => {
                return Err(format!("{:?} takes no argument, found {:?}", w[0], w[1]))
            }
            "accept" => TcpAction::Accept,
            "reject" => TcpAction::Reject,
            t if t.starts_with("track-sc") => {
                self.track(&w)?;
                TcpAction::TrackSc0
            }
            other => {
                return Err(format!(
                    "unknown tcp-request connection action {other:?}; expected accept, \
                     reject or track-sc0 src"
                ))
            }
        };
        let text = line.trim().to_string();
        Ok(TcpRule { action, cond, text })
    }

    /// One `http-request` line.
    fn http_rule(&mut self, line: &str) -> Result<HttpRule, String> {
        let (w, cond) = self.split_rule(line, false)?;
        let action = match w[0].as_str() {
            "allow" if w.len() > 1 => {
                return Err(format!("\"allow\" takes no argument, found {:?}", w[1]))
            }
            "allow" => HttpAction::Allow,
            "deny" => HttpAction::Deny {
                status: deny_status(&w[1..], 403)?,
            },
            "tarpit" => HttpAction::Tarpit {
                status: deny_status(&w[1..], 500)?,
            },
            "redirect" => HttpAction::Redirect(redirect(&w[1..])?),
            t if t.starts_with("track-sc") => {
                self.track(&w)?;
                HttpAction::TrackSc0
            }
            other => {
                return Err(format!(
                    "unknown http-request action {other:?}; expected allow, deny, tarpit, \
                     redirect or track-sc0 src"
                ))
            }
        };
        let text = line.trim().to_string();
        Ok(HttpRule { action, cond, text })
    }

    /// `track-sc0 src`: the frontend's own table, keyed by the source address.
    fn track(&self, w: &[String]) -> Result<(), String> {
        if w[0] != "track-sc0" {
            return Err(format!(
                "{:?}: webfarm tracks one counter set per request, sc0; use track-sc0",
                w[0]
            ));
        }
        match w.get(1).map(String::as_str) {
            Some("src") => {}
            Some(other) => {
                return Err(format!(
                    "track-sc0 {other}: the stick table is keyed by address (type ip); \
                     only \"track-sc0 src\" is supported"
                ))
            }
            None => return Err("track-sc0 needs a key: \"track-sc0 src\"".into()),
        }
        if let Some(extra) = w.get(2) {
            return Err(format!(
                "track-sc0 src: unexpected {extra:?} (the frontend's own stick table is used; \
                 no `table` argument)"
            ));
        }
        if self.table.is_none() {
            return Err(
                "track-sc0 needs a stick table: add stick_table = { type = \"ip\", \
                        size = \"100k\", expire = \"30s\", store = [...] } to this frontend"
                    .into(),
            );
        }
        Ok(())
    }
}

/// An action's words and its condition.
type RuleParts = Result<(Vec<String>, Option<Condition>), String>;

/// How a value is matched, before the values are read.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Ip,
    Str(StrMatch),
    Found,
    Int,
    Len,
    Bool,
}

/// A fetch word (`src`, `path_beg`, `hdr(host)`, `sc_http_req_rate(0)`...) and the match
/// its name implies (`path_beg`: prefix).
fn parse_fetch(word: &str) -> Result<(Fetch, Option<Kind>), String> {
    let (name, arg) = match word.split_once('(') {
        Some((n, rest)) => {
            let arg = rest
                .strip_suffix(')')
                .ok_or_else(|| format!("{word:?}: missing `)`"))?;
            (n, Some(arg.trim()))
        }
        None => (word, None),
    };
    let name = name.strip_prefix("req.").unwrap_or(name);
    let str_kind = |m| Some(Kind::Str(m));
    let plain = |f: Fetch, k: Option<Kind>| -> Result<(Fetch, Option<Kind>), String> {
        match arg {
            None => Ok((f, k)),
            Some(_) => Err(format!("{name} takes no argument")),
        }
    };
    match name {
        "src" => plain(Fetch::Src, None),
        "path" => plain(Fetch::Path, None),
        "path_beg" => plain(Fetch::Path, str_kind(StrMatch::Beg)),
        "path_end" => plain(Fetch::Path, str_kind(StrMatch::End)),
        "path_sub" => plain(Fetch::Path, str_kind(StrMatch::Sub)),
        "path_dir" => plain(Fetch::Path, str_kind(StrMatch::Dir)),
        "method" => plain(Fetch::Method, None),
        "ssl_fc_sni" => plain(Fetch::Sni, None),
        "always_true" => plain(Fetch::AlwaysTrue, None),
        "always_false" => plain(Fetch::AlwaysFalse, None),
        "hdr" | "hdr_beg" | "hdr_end" | "hdr_sub" | "hdr_dom" | "hdr_cnt" => {
            let header = header_name(name, arg)?;
            Ok(match name {
                "hdr_cnt" => (Fetch::HdrCnt(header), None),
                "hdr_beg" => (Fetch::Hdr(header), str_kind(StrMatch::Beg)),
                "hdr_end" => (Fetch::Hdr(header), str_kind(StrMatch::End)),
                "hdr_sub" => (Fetch::Hdr(header), str_kind(StrMatch::Sub)),
                "hdr_dom" => (Fetch::Hdr(header), str_kind(StrMatch::Dom)),
                _ => (Fetch::Hdr(header), None),
            })
        }
        "ssl_sni" | "req_ssl_sni" => Err(format!(
            "{word}: the ClientHello's name is read by tcp frontends for sni_routes; in \
             ACLs use ssl_fc_sni on an HTTPS frontend (tls = {{...}})"
        )),
        _ => counter_fetch(name, arg).ok_or_else(|| {
            format!(
                "unknown sample fetch {word:?}; expected src, path, path_beg, path_end, \
                 path_sub, path_dir, method, hdr(<name>), hdr_beg/end/sub/dom(<name>), \
                 hdr_cnt(<name>), ssl_fc_sni, sc0_<counter>, sc_<counter>(0), \
                 src_<counter> (counters: http_req_rate, http_req_cnt, conn_rate, \
                 conn_cnt, conn_cur), always_true, always_false"
            )
        })?,
    }
}

/// `sc0_http_req_rate`, `sc_conn_cur(0)`, `src_conn_rate`...
fn counter_fetch(name: &str, arg: Option<&str>) -> Option<Result<(Fetch, Option<Kind>), String>> {
    let counter = |s: &str| Counter::ALL.into_iter().find(|c| c.as_str() == s);
    if let Some(c) = name.strip_prefix("sc0_").and_then(counter) {
        return Some(match arg {
            None => Ok((Fetch::Sc0(c), None)),
            Some(_) => Err(format!(
                "{name}: the frontend's own table is read; no argument"
            )),
        });
    }
    if let Some(c) = name.strip_prefix("sc_").and_then(counter) {
        return Some(match arg {
            Some("0") => Ok((Fetch::Sc0(c), None)),
            _ => Err(format!(
                "{name}(...): webfarm tracks sc0 only; write {name}(0)"
            )),
        });
    }
    let c = name.strip_prefix("src_").and_then(counter)?;
    Some(match arg {
        None => Ok((Fetch::SrcCounter(c), None)),
        Some(_) => Err(format!(
            "{name}: the frontend's own table is read; no argument"
        )),
    })
}

/// The header name of `hdr(<name>)`, in lower case.
fn header_name(fetch: &str, arg: Option<&str>) -> Result<String, String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    match arg {
        Some(a) if !a.is_empty() && a.bytes().all(tchar) => Ok(a.to_ascii_lowercase()),
        Some(a) => Err(format!("{fetch}({a}): {a:?} is not a header name")),
        None => Err(format!("{fetch} needs a header name: {fetch}(<name>)")),
    }
}

/// The match of `fetch`: the fetch's own, the derived one (`path_beg`), or `-m <method>`.
fn match_kind(
    fetch: &Fetch,
    derived: Option<Kind>,
    method: Option<&str>,
    word: &str,
) -> Result<Kind, String> {
    let natural = match fetch {
        Fetch::Src => Kind::Ip,
        Fetch::Path | Fetch::Method | Fetch::Hdr(_) | Fetch::Sni => Kind::Str(StrMatch::Exact),
        Fetch::HdrCnt(_) | Fetch::Sc0(_) | Fetch::SrcCounter(_) => Kind::Int,
        Fetch::AlwaysTrue | Fetch::AlwaysFalse => Kind::Bool,
    };
    let Some(m) = method else {
        return Ok(derived.unwrap_or(natural));
    };
    if derived.is_some() {
        return Err(format!(
            "{word} already says how it matches; drop `-m {m}` or use the plain fetch"
        ));
    }
    let asked = match m {
        "str" => Kind::Str(StrMatch::Exact),
        "beg" => Kind::Str(StrMatch::Beg),
        "end" => Kind::Str(StrMatch::End),
        "sub" => Kind::Str(StrMatch::Sub),
        "dir" => Kind::Str(StrMatch::Dir),
        "dom" => Kind::Str(StrMatch::Dom),
        "found" => Kind::Found,
        "len" => Kind::Len,
        "int" => Kind::Int,
        "ip" => Kind::Ip,
        "reg" | "regm" => {
            return Err(
                "-m reg: regular expressions are not supported; use beg, end, sub or dir".into(),
            )
        }
        other => {
            return Err(format!(
                "unknown match method -m {other}; expected str, beg, end, sub, dir, dom, \
                 found, len, int or ip"
            ))
        }
    };
    let fits = match natural {
        Kind::Str(_) => matches!(asked, Kind::Str(_) | Kind::Found | Kind::Len),
        other => asked == other,
    };
    if fits {
        Ok(asked)
    } else {
        Err(format!("-m {m} does not apply to {word}"))
    }
}

/// The pattern of `kind` from `values`.
fn pattern(kind: Kind, ignore_case: bool, values: &[String]) -> Result<Pattern, String> {
    let need_values = || {
        if values.is_empty() {
            Err("no value to match; give at least one (or -m found)".to_string())
        } else {
            Ok(())
        }
    };
    match kind {
        Kind::Bool | Kind::Found => match values.first() {
            None => Ok(if kind == Kind::Bool {
                Pattern::Bool
            } else {
                Pattern::Found
            }),
            Some(v) => Err(format!("unexpected value {v:?}: this test takes none")),
        },
        Kind::Ip => {
            need_values()?;
            let nets = values
                .iter()
                .map(|v| parse_net(v))
                .collect::<Result<_, _>>()?;
            Ok(Pattern::Ip(nets))
        }
        Kind::Str(how) => {
            need_values()?;
            let values = values
                .iter()
                .map(|v| {
                    if ignore_case {
                        v.to_ascii_lowercase()
                    } else {
                        v.clone()
                    }
                })
                .collect();
            Ok(Pattern::Str(StrPattern {
                how,
                ignore_case,
                values,
            }))
        }
        Kind::Int | Kind::Len => {
            need_values()?;
            let tests = int_tests(values)?;
            Ok(if kind == Kind::Int {
                Pattern::Int(tests)
            } else {
                Pattern::Len(tests)
            })
        }
    }
}

/// `gt 100`, `eq 3`, or values `5` and `10:20`.
fn int_tests(values: &[String]) -> Result<Vec<IntTest>, String> {
    let number = |v: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("{v:?} is not a whole number"))
    };
    let op = |o: &str| -> Option<fn(u64) -> IntTest> {
        Some(match o {
            "eq" => IntTest::Eq,
            "gt" => IntTest::Gt,
            "ge" => IntTest::Ge,
            "lt" => IntTest::Lt,
            "le" => IntTest::Le,
            _ => return None,
        })
    };
    if let Some(make) = op(&values[0]) {
        return match &values[1..] {
            [n] => Ok(vec![make(number(n)?)]),
            _ => Err(format!(
                "{:?} takes exactly one number (e.g. \"gt 100\")",
                values[0]
            )),
        };
    }
    values
        .iter()
        .map(|v| match v.split_once(':') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("range {v:?}: {a} is above {b}"));
                }
                Ok(IntTest::Range(a, b))
            }
            None => Ok(IntTest::Eq(number(v)?)),
        })
        .collect()
}

/// `[deny_status N]` (or HAProxy 2.2's `status N`) after deny/tarpit.
fn deny_status(w: &[String], default: u16) -> Result<u16, String> {
    match w {
        [] => Ok(default),
        [k, n] if k == "deny_status" || k == "status" => {
            let code = n
                .parse::<u16>()
                .map_err(|_| format!("{n:?} is not a status"))?;
            if DENY_STATUSES.contains(&code) {
                Ok(code)
            } else {
                Err(format!(
                    "{k} {code}: not a status HAProxy answers with; expected one of \
                     {DENY_STATUSES:?}"
                ))
            }
        }
        _ => Err(format!(
            "unexpected {:?}; expected [deny_status <code>] then if/unless",
            w.join(" ")
        )),
    }
}

/// `location|prefix|scheme <x> [code N] [drop-query] [append-slash]`.
fn redirect(w: &[String]) -> Result<Redirect, String> {
    let kind = match w.first().map(String::as_str) {
        Some("location") => RedirectKind::Location,
        Some("prefix") => RedirectKind::Prefix,
        Some("scheme") => RedirectKind::Scheme,
        _ => return Err("redirect needs location, prefix or scheme, then a value".into()),
    };
    let value = w
        .get(1)
        .ok_or_else(|| format!("redirect {}: missing its value", w[0]))?
        .clone();
    if value.is_empty() || value.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "redirect {} {value:?}: not usable in a Location header",
            w[0]
        ));
    }
    if value.contains("%[") {
        return Err(format!(
            "redirect {} {value:?}: log-format values (%[...]) are not supported; give a \
             literal value",
            w[0]
        ));
    }
    let mut r = Redirect {
        kind,
        value,
        code: 302,
        drop_query: false,
        append_slash: false,
    };
    let mut i = 2;
    while let Some(opt) = w.get(i) {
        match opt.as_str() {
            "code" => {
                i += 1;
                let n = w.get(i).ok_or("code needs a status")?;
                r.code = match n.parse::<u16>() {
                    Ok(c @ (301 | 302 | 303 | 307 | 308)) => c,
                    _ => {
                        return Err(format!(
                            "redirect code {n}: expected 301, 302, 303, 307 or 308"
                        ))
                    }
                };
            }
            "drop-query" => r.drop_query = true,
            "append-slash" => r.append_slash = true,
            other => {
                return Err(format!(
                    "unknown redirect option {other:?}; expected code <N>, drop-query or \
                     append-slash"
                ))
            }
        }
        i += 1;
    }
    Ok(r)
}
