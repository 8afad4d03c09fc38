//! Which of the contract's unconfirmed answers the fake serves: the shapes written in
//! `intakeq-files-api.md` as the likely ones (the default, which every test was written
//! against) or the plausible alternatives, so that a shape `intakeq-fs check` finds on
//! a real account can be replayed here as a test.

/// A set of answer shapes the fake server uses where the contract is unconfirmed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// The contract's likely shapes: uploads answer 200 with an empty body, a bad key
    /// answers 401 with a `Message` field, `includeProfile=true` gives rows with
    /// `ClientId`.
    #[default]
    Contract,
    /// The plausible alternatives: uploads answer an object with the new `Id`, a bad key
    /// answers 401 with an empty `text/plain` body, and client rows always come in the
    /// short form (`ClientNumber`, no `ClientId`), as if `includeProfile` were absent.
    Alt,
}

impl Profile {
    /// The profile's name on the command line and in `/_admin/profile`.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Contract => "contract",
            Profile::Alt => "alt",
        }
    }

    /// The profile with this name.
    pub fn from_name(s: &str) -> Option<Profile> {
        [Profile::Contract, Profile::Alt].into_iter().find(|p| p.name() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_command_line() {
        use clap::ValueEnum;
        for p in Profile::value_variants() {
            assert_eq!(Profile::from_name(p.name()), Some(*p));
            assert_eq!(p.to_possible_value().unwrap().get_name(), p.name());
        }
        assert_eq!(Profile::from_name("other"), None);
        assert_eq!(Profile::default(), Profile::Contract);
    }
}
