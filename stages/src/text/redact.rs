//! Finding secrets and personal data in text that is about to be published
//! (rendered traces, prompts, completions), and replacing each with a typed
//! placeholder: `<secret:aws_access_key>`, `<email>`, `<ip>`.
//!
//! The secret families and their shapes are those of gitleaks' default rule
//! set (`config/gitleaks.toml`: `aws-access-token`, `github-pat`,
//! `github-fine-grained-pat`, `github-oauth`/`-app-token`/`-refresh-token`,
//! `slack-*-token`, `stripe-access-token`, `openai-api-key`, `gcp-api-key`,
//! `private-key`, `jwt`), taken as facts and written here anew; the personal
//! data families (e-mail addresses, IPv4 addresses, phone numbers, passwords
//! in URLs) follow detect-secrets' `BasicAuthDetector` for URLs and the usual
//! shapes for the rest. Every rule is anchored on a prefix or structure that
//! random data rarely has, so look-alikes survive: hex digests, UUIDs, base64
//! test data, version strings, floats, dates. What a rule set like this
//! misses: secrets with no recognisable prefix (a bare 40-character AWS
//! secret key, a generic password in a variable), which is what taint
//! masking in the tracer is for.

use regex::Regex;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// One rule: what it finds, its placeholder, and the pattern. `group` is the
/// capture group replaced (0: the whole match).
struct Rule {
    kind: &'static str,
    placeholder: &'static str,
    pattern: &'static str,
    group: usize,
    /// A match must also pass this check (e.g. IPv4 octets at most 255).
    valid: fn(&str) -> bool,
}

fn any(_: &str) -> bool {
    true
}

/// Four dotted octets, each 0-255, not a version-like `0.x.y.z` or `1.2.3.4`
/// with a zero first octet.
fn ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u16>().is_ok_and(|n| n <= 255))
        && parts[0] != "0"
}

/// A phone number has 10 to 15 digits.
fn phone(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    (10..=15).contains(&digits)
}

/// The rules, most specific first: a span found by one is not matched again.
const RULES: &[Rule] = &[
    Rule {
        kind: "private_key",
        placeholder: "<secret:private_key>",
        pattern: r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[\s\S]{0,8192}?-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----",
        group: 0,
        valid: any,
    },
    Rule {
        kind: "aws_access_key",
        placeholder: "<secret:aws_access_key>",
        pattern: r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z2-7]{16}\b",
        group: 0,
        valid: any,
    },
    Rule {
        kind: "github_token",
        placeholder: "<secret:github_token>",
        pattern: r"\b(?:gh[pousr]_[0-9A-Za-z]{36}|github_pat_[0-9A-Za-z_]{82})\b",
        group: 0,
        valid: any,
    },
    Rule {
        kind: "slack_token",
        placeholder: "<secret:slack_token>",
        pattern: r"\bxox[baprse]-[0-9A-Za-z-]{10,250}",
        group: 0,
        valid: any,
    },
    Rule {
        kind: "stripe_key",
        placeholder: "<secret:stripe_key>",
        pattern: r"\b(?:sk|rk)_(?:live|test|prod)_[0-9A-Za-z]{10,99}\b",
        group: 0,
        valid: any,
    },
    Rule {
        kind: "openai_key",
        placeholder: "<secret:openai_key>",
        pattern: r"\bsk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_-]{20,74}T3BlbkFJ[A-Za-z0-9_-]{20,74}\b",
        group: 0,
        valid: any,
    },
    Rule {
        kind: "gcp_api_key",
        placeholder: "<secret:gcp_api_key>",
        pattern: r"\bAIza[0-9A-Za-z_-]{35}\b",
        group: 0,
        valid: any,
    },
    Rule {
        kind: "jwt",
        placeholder: "<secret:jwt>",
        pattern: r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
        group: 0,
        valid: any,
    },
    Rule {
        kind: "url_password",
        placeholder: "<secret:password>",
        pattern: r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@]{1,64}:([^\s@/]{1,128})@",
        group: 1,
        valid: any,
    },
    Rule {
        kind: "email",
        placeholder: "<email>",
        pattern: r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b",
        group: 0,
        valid: any,
    },
    Rule {
        kind: "ip_address",
        placeholder: "<ip>",
        pattern: r"(?:^|[^0-9.])((?:[0-9]{1,3}\.){3}[0-9]{1,3})(?:$|[^0-9.])",
        group: 1,
        valid: ipv4,
    },
    Rule {
        kind: "phone",
        placeholder: "<phone>",
        pattern: r"(?:^|[^0-9A-Za-z+])((?:\+[1-9][0-9]{0,2}[ .-]?)?\(?[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4}|\+[1-9][0-9]{0,2}(?:[ .-][0-9]{2,5}){2,4}|\+[1-9][0-9]{9,14})(?:$|[^0-9A-Za-z])",
        group: 1,
        valid: phone,
    },
];

fn compiled() -> &'static [(Regex, &'static Rule)] {
    static ALL: OnceLock<Vec<(Regex, &'static Rule)>> = OnceLock::new();
    ALL.get_or_init(|| {
        RULES
            .iter()
            .map(|r| (Regex::new(r.pattern).expect("a valid redaction pattern"), r))
            .collect()
    })
}

/// The kinds of finding `tw` redacts, in rule order.
pub fn kinds() -> Vec<&'static str> {
    RULES.iter().map(|r| r.kind).collect()
}

/// One finding: its kind and byte span in the text it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
}

/// Every finding in `text`, in order, without overlaps (an earlier rule wins).
pub fn find(text: &str) -> Vec<Finding> {
    let mut found: Vec<Finding> = Vec::new();
    for (re, rule) in compiled() {
        for caps in re.captures_iter(text) {
            let Some(m) = caps.get(rule.group) else {
                continue;
            };
            if !(rule.valid)(m.as_str()) {
                continue;
            }
            if found.iter().any(|f| m.start() < f.end && f.start < m.end()) {
                continue;
            }
            found.push(Finding {
                kind: rule.kind,
                start: m.start(),
                end: m.end(),
            });
        }
    }
    found.sort_by_key(|f| f.start);
    found
}

/// `text` with every finding replaced by its placeholder, and the count per kind.
pub fn redact(text: &str) -> (String, BTreeMap<&'static str, usize>) {
    let findings = find(text);
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    if findings.is_empty() {
        return (text.to_string(), counts);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in &findings {
        out.push_str(&text[at..f.start]);
        out.push_str(placeholder(f.kind));
        *counts.entry(f.kind).or_default() += 1;
        at = f.end;
    }
    out.push_str(&text[at..]);
    (out, counts)
}

/// The placeholder of a kind.
pub fn placeholder(kind: &str) -> &'static str {
    RULES
        .iter()
        .find(|r| r.kind == kind)
        .map_or("<redacted>", |r| r.placeholder)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recall measured on the labelled fixture.
    const RECALL: f64 = 1.0;

    #[test]
    fn each_family_is_found_and_replaced_by_its_placeholder() {
        let cases = [
            (
                "key = 'AKIAIOSFODNN7EXAMPLE'",
                "key = '<secret:aws_access_key>'",
            ),
            (
                "token ghp_0123456789abcdefghijABCDEFGHIJ012345 ok",
                "token <secret:github_token> ok",
            ),
            (
                "db = postgres://admin:hunter22@db.local/x",
                "db = postgres://admin:<secret:password>@db.local/x",
            ),
            ("mail me: jane.doe@example.org.", "mail me: <email>."),
            ("host 192.168.10.4 port", "host <ip> port"),
            ("call +1 415-555-0100 now", "call <phone> now"),
            ("uk +44 20 7946 0958.", "uk <phone>."),
            (
                "AIzaSyA1234567890abcdefghijklmnopqrstuv",
                "<secret:gcp_api_key>",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(redact(text).0, want, "{text}");
        }
        let pem =
            "x = '''-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----'''";
        assert_eq!(redact(pem).0, "x = '''<secret:private_key>'''");
        let (_, counts) = redact("a@b.co and c@d.io at 10.0.0.1");
        assert_eq!(counts["email"], 2);
        assert_eq!(counts["ip_address"], 1);
    }

    /// Precision and recall on the labelled fixture
    /// (`tests/it/fixtures/redaction/labelled.jsonl`, built by
    /// `make_labelled.py` there): synthetic secrets and personal data planted
    /// in rendered-trace text, and look-alikes (digests, UUIDs, base64,
    /// versions, dates, long numbers and random strings) that must survive.
    /// Returns (findings that are planted values, other findings, planted
    /// values found, planted values, what went wrong).
    fn measured() -> (usize, usize, usize, usize, Vec<String>) {
        let fixture = include_str!("../../../tests/it/fixtures/redaction/labelled.jsonl");
        let (mut tp, mut fp, mut recalled, mut missed) = (0, 0, 0, Vec::new());
        let mut labels_total = 0;
        for line in fixture.lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = row["text"].as_str().unwrap();
            let labels: Vec<(String, String)> = row["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        l["kind"].as_str().unwrap().to_string(),
                        l["text"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            labels_total += labels.len();
            let found: Vec<(String, String)> = find(text)
                .into_iter()
                .map(|f| (f.kind.to_string(), text[f.start..f.end].to_string()))
                .collect();
            for f in &found {
                if labels.contains(f) {
                    tp += 1;
                } else {
                    fp += 1;
                    missed.push(format!("false positive {f:?} in {text:?}"));
                }
            }
            for l in &labels {
                if found.contains(l) {
                    recalled += 1;
                } else {
                    missed.push(format!("missed {l:?}"));
                }
            }
        }
        (tp, fp, recalled, labels_total, missed)
    }

    #[test]
    fn precision_and_recall_on_the_labelled_fixture_hold() {
        let (tp, fp, recalled, labels, report) = measured();
        let precision = tp as f64 / (tp + fp).max(1) as f64;
        let recall = recalled as f64 / labels.max(1) as f64;
        eprintln!(
            "redaction: {recalled} of {labels} planted values found, {tp} findings right, {fp} false positives; \
             precision {precision:.3}, recall {recall:.3}"
        );
        for r in &report {
            eprintln!("  {r}");
        }
        assert_eq!(
            labels, 180,
            "the fixture changed: update the figures here and in the README"
        );
        // The measured figures; a change that lowers either fails here.
        assert!(precision >= 1.0, "precision {precision}");
        assert!(recall >= RECALL, "recall {recall}");
    }

    #[test]
    fn look_alikes_survive() {
        for text in [
            "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "uuid 123e4567-e89b-12d3-a456-426614174000",
            "b64 'SGVsbG8sIFdvcmxkIQ=='",
            "version 1.2.3 and python 3.11.4",
            "x = 3.14159, y = 2.71828",
            "date 2024-08-01 12:30:00",
            "n = 1234567890",
            "xs = [1.5, 2.5, 3.5, 4.5]",
            "0.0.0.0 is no host",
            "pytest::test_a",
        ] {
            assert_eq!(redact(text).0, text, "{text}");
        }
    }
}
