//! The check's report: what each call answered (shapes only), the deviations from the
//! contract with what each means for the mount, the verdict and its exit code, and the
//! two renderings (plain text to paste into an issue, JSON for scripts).

use std::fmt::Write as _;

use serde::Serialize;

/// Exit code: every answer matches the contract, or differs only in ways the mount handles.
pub const EXIT_SAFE: u8 = 0;
/// Exit code: at least one deviation makes the mount unsafe (or unusable) for this account.
pub const EXIT_UNSAFE: u8 = 1;
/// Exit code: the check could not run or could not finish (bad arguments, no key,
/// network failure, key rejected, rate limited, server error).
pub const EXIT_ERROR: u8 = 2;

/// How much a deviation matters to the mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The mount could lose, corrupt, duplicate or misplace files, fail to read them,
    /// or send the key elsewhere: do not use the drive with this account until fixed.
    Unsafe,
    /// A feature works worse (wrong times, a listing that cannot be read), no data at risk.
    Degraded,
    /// One of the contract's plausible alternatives, which the mount is built to handle.
    Handled,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Unsafe => "UNSAFE",
            Severity::Degraded => "degraded",
            Severity::Handled => "handled",
        }
    }
}

/// One way the service differs from the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable identifier for scripts and tests, e.g. `upload-answer-id`.
    pub code: &'static str,
    /// How much it matters.
    pub severity: Severity,
    /// The step (call) where it was seen, e.g. `POST files/<client>`.
    pub step: String,
    /// What the service did, as shapes (never names or key).
    pub observed: String,
    /// What it means for the mount.
    pub meaning: String,
}

/// One call the check made (or meant to make) and what came back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The request, ids shown as placeholders or numbers, e.g. `GET files?clientId=<probed client>`.
    pub request: String,
    /// Why the check makes this call.
    pub purpose: String,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// What came back, line by line, as shapes.
    pub observations: Vec<String>,
    /// Set when the call was not made or did not complete, with the reason.
    pub error: Option<String>,
}

/// Everything the check found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `intakeq-fs <version>`.
    pub tool: String,
    /// The API's host (and port if not the default), never the full URL.
    pub service: String,
    /// `read-only` or `write`.
    pub mode: String,
    /// The most calls the check allowed itself, announced before starting.
    pub budget: u32,
    /// The calls it made.
    pub calls: u32,
    /// The calls, in order.
    pub steps: Vec<Step>,
    /// The deviations from the contract.
    pub findings: Vec<Finding>,
    /// Why the check stopped early, if it did.
    pub incomplete: Option<String>,
    /// If the marker file could not be deleted: what the user must remove by hand.
    pub leftover: Option<String>,
}

impl Report {
    /// 0 safe, 1 unsafe (even if the check also stopped early), 2 could not finish.
    pub fn exit_code(&self) -> u8 {
        if self.findings.iter().any(|f| f.severity == Severity::Unsafe) {
            EXIT_UNSAFE
        } else if self.incomplete.is_some() || self.leftover.is_some() {
            EXIT_ERROR
        } else {
            EXIT_SAFE
        }
    }

    /// The one-line verdict.
    pub fn verdict(&self) -> &'static str {
        match self.exit_code() {
            EXIT_UNSAFE => "UNSAFE: at least one answer makes the mount unsafe for this account",
            EXIT_ERROR => "INCOMPLETE: the check could not finish",
            _ if self.findings.is_empty() => "OK: every answer matches the contract",
            _ => "OK: the answers differ from the contract only in ways the mount handles",
        }
    }

    /// The findings' codes, in order (for tests and scripts).
    pub fn codes(&self) -> Vec<&'static str> {
        self.findings.iter().map(|f| f.code).collect()
    }

    /// The report as JSON (the same content as the text), with the exit code and verdict.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            /// The report's own fields, at the top level.
            #[serde(flatten)]
            report: &'a Report,
            /// What the command exits with.
            exit_code: u8,
            /// The one-line verdict.
            verdict: &'a str,
        }
        let out = Out {
            report: self,
            exit_code: self.exit_code(),
            verdict: self.verdict(),
        };
        serde_json::to_string_pretty(&out).unwrap_or_else(|e| format!("{{\"error\": \"cannot render: {e}\"}}"))
    }

    /// The report as plain text to paste into an issue.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "## intakeq-fs check report");
        let _ = writeln!(o);
        let _ = writeln!(o, "tool:    {}", self.tool);
        let _ = writeln!(o, "service: {}", self.service);
        let _ = writeln!(o, "mode:    {}", self.mode);
        let _ = writeln!(o, "calls:   {} of at most {}", self.calls, self.budget);
        let _ = writeln!(o, "result:  {} (exit {})", self.verdict(), self.exit_code());
        if let Some(why) = &self.incomplete {
            let _ = writeln!(o, "stopped: {why}");
        }
        if let Some(left) = &self.leftover {
            let _ = writeln!(o, "ACTION:  {left}");
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "### Deviations from the contract");
        if self.findings.is_empty() {
            let _ = writeln!(o, "none");
        }
        for f in &self.findings {
            let _ = writeln!(o, "- [{}] {} ({}): {}", f.severity.label(), f.code, f.step, f.observed);
            let _ = writeln!(o, "  means: {}", f.meaning);
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "### Calls");
        for (i, s) in self.steps.iter().enumerate() {
            let status = s.status.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
            let _ = writeln!(o, "{}. {} → {}: {}", i + 1, s.request, status, s.purpose);
            for line in &s.observations {
                let _ = writeln!(o, "   {line}");
            }
            if let Some(e) = &s.error {
                let _ = writeln!(o, "   error: {e}");
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Severity) -> Finding {
        Finding {
            code: "x",
            severity,
            step: "GET folders".into(),
            observed: "o".into(),
            meaning: "m".into(),
        }
    }

    #[test]
    fn exit_code_puts_unsafe_before_incomplete() {
        let mut r = Report::default();
        assert_eq!(r.exit_code(), EXIT_SAFE);
        r.findings.push(finding(Severity::Handled));
        r.findings.push(finding(Severity::Degraded));
        assert_eq!(r.exit_code(), EXIT_SAFE);
        r.incomplete = Some("rate limited".into());
        assert_eq!(r.exit_code(), EXIT_ERROR);
        r.findings.push(finding(Severity::Unsafe));
        assert_eq!(r.exit_code(), EXIT_UNSAFE);
    }

    #[test]
    fn json_carries_the_same_findings_and_the_exit_code() {
        let mut r = Report::default();
        r.findings.push(finding(Severity::Handled));
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["findings"][0]["severity"], "handled");
        assert_eq!(v["findings"][0]["code"], "x");
        assert!(r.to_text().contains("- [handled] x (GET folders): o\n  means: m\n"));
    }
}
