//! UPnP IGD error codes and the shapes of action arguments.
//!
//! Owns: [`UpnpError`], each variant with its wire code and description
//! (UPnP Device Architecture §3.2.2 and the IGD service templates), and
//! [`Args`], the in-arguments of one SOAP action. Pure.

/// An error a control action answers with. Codes 7xx are service-specific:
/// the same number means different things in WANIPConnection and
/// WANIPv6FirewallControl, so each has its own variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpnpError {
    InvalidAction,
    InvalidArgs,
    InvalidVar,
    ActionFailed,
    ArgumentValueInvalid,
    ArgumentValueOutOfRange,
    StringArgumentTooLong,
    ActionNotAuthorized,
    // WANIPConnection
    SpecifiedArrayIndexInvalid,
    NoSuchEntryInArray,
    WildCardNotPermittedInSrcIp,
    WildCardNotPermittedInExtPort,
    ConflictInMappingEntry,
    SamePortValuesRequired,
    OnlyPermanentLeasesSupported,
    RemoteHostOnlySupportsWildcard,
    ExternalPortOnlySupportsWildcard,
    NoPortMapsAvailable,
    ConflictWithOtherMechanisms,
    PortMappingNotFound,
    ReadOnly,
    WildCardNotPermittedInIntPort,
    InconsistentParameters,
    // WANIPv6FirewallControl
    PinholeSpaceExhausted,
    FirewallDisabled,
    InboundPinholeNotAllowed,
    NoSuchEntry,
    ProtocolNotSupported,
    InternalPortWildcardingNotAllowed,
    ProtocolWildcardingNotAllowed,
    WildCardNotPermittedInSrcIpv6,
    NoTrafficReceived,
}

impl UpnpError {
    /// The `errorCode` on the wire.
    pub fn code(self) -> u16 {
        use UpnpError::*;
        match self {
            InvalidAction => 401,
            InvalidArgs => 402,
            InvalidVar => 404,
            ActionFailed => 501,
            ArgumentValueInvalid => 600,
            ArgumentValueOutOfRange => 601,
            StringArgumentTooLong => 605,
            ActionNotAuthorized => 606,
            SpecifiedArrayIndexInvalid => 713,
            NoSuchEntryInArray => 714,
            WildCardNotPermittedInSrcIp => 715,
            WildCardNotPermittedInExtPort => 716,
            ConflictInMappingEntry => 718,
            SamePortValuesRequired => 724,
            OnlyPermanentLeasesSupported => 725,
            RemoteHostOnlySupportsWildcard => 726,
            ExternalPortOnlySupportsWildcard => 727,
            NoPortMapsAvailable => 728,
            ConflictWithOtherMechanisms => 729,
            PortMappingNotFound => 730,
            ReadOnly => 731,
            WildCardNotPermittedInIntPort => 732,
            InconsistentParameters => 733,
            PinholeSpaceExhausted => 701,
            FirewallDisabled => 702,
            InboundPinholeNotAllowed => 703,
            NoSuchEntry => 704,
            ProtocolNotSupported => 705,
            InternalPortWildcardingNotAllowed => 706,
            ProtocolWildcardingNotAllowed => 707,
            WildCardNotPermittedInSrcIpv6 => 708,
            NoTrafficReceived => 709,
        }
    }

    /// The `errorDescription` on the wire.
    pub fn description(self) -> &'static str {
        use UpnpError::*;
        match self {
            InvalidAction => "Invalid Action",
            InvalidArgs => "Invalid Args",
            InvalidVar => "Invalid Var",
            ActionFailed => "Action Failed",
            ArgumentValueInvalid => "Argument Value Invalid",
            ArgumentValueOutOfRange => "Argument Value Out of Range",
            StringArgumentTooLong => "String Argument Too Long",
            ActionNotAuthorized => "Action not authorized",
            SpecifiedArrayIndexInvalid => "SpecifiedArrayIndexInvalid",
            NoSuchEntryInArray => "NoSuchEntryInArray",
            WildCardNotPermittedInSrcIp => "WildCardNotPermittedInSrcIP",
            WildCardNotPermittedInExtPort => "WildCardNotPermittedInExtPort",
            ConflictInMappingEntry => "ConflictInMappingEntry",
            SamePortValuesRequired => "SamePortValuesRequired",
            OnlyPermanentLeasesSupported => "OnlyPermanentLeasesSupported",
            RemoteHostOnlySupportsWildcard => "RemoteHostOnlySupportsWildcard",
            ExternalPortOnlySupportsWildcard => "ExternalPortOnlySupportsWildcard",
            NoPortMapsAvailable => "NoPortMapsAvailable",
            ConflictWithOtherMechanisms => "ConflictWithOtherMechanisms",
            PortMappingNotFound => "PortMappingNotFound",
            ReadOnly => "ReadOnly",
            WildCardNotPermittedInIntPort => "WildCardNotPermittedInIntPort",
            InconsistentParameters => "InconsistentParameters",
            PinholeSpaceExhausted => "PinholeSpaceExhausted",
            FirewallDisabled => "FirewallDisabled",
            InboundPinholeNotAllowed => "InboundPinholeNotAllowed",
            NoSuchEntry => "NoSuchEntry",
            ProtocolNotSupported => "ProtocolNotSupported",
            InternalPortWildcardingNotAllowed => "InternalPortWildcardingNotAllowed",
            ProtocolWildcardingNotAllowed => "ProtocolWildcardingNotAllowed",
            WildCardNotPermittedInSrcIpv6 => "WildCardNotPermittedInSrcIP",
            NoTrafficReceived => "NoTrafficReceived",
        }
    }
}

/// The in-arguments of one action, by name, in the order received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args(pub Vec<(String, String)>);

impl Args {
    /// The value of argument `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A required argument: missing → 402 Invalid Args.
    pub fn req(&self, name: &str) -> Result<&str, UpnpError> {
        self.get(name).ok_or(UpnpError::InvalidArgs)
    }

    /// A required unsigned 16-bit argument (surrounding whitespace allowed).
    pub fn u16(&self, name: &str) -> Result<u16, UpnpError> {
        crate::proto::parse_u16(self.req(name)?.trim()).ok_or(UpnpError::InvalidArgs)
    }

    /// A required unsigned 32-bit argument.
    pub fn u32(&self, name: &str) -> Result<u32, UpnpError> {
        crate::proto::parse_u32(self.req(name)?.trim()).ok_or(UpnpError::InvalidArgs)
    }

    /// A required boolean (UDA: `0`, `1`, `false`, `true`, `no`, `yes`).
    pub fn bool(&self, name: &str) -> Result<bool, UpnpError> {
        parse_bool(self.req(name)?).ok_or(UpnpError::InvalidArgs)
    }
}

/// UDA boolean spellings.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" => Some(true),
        "0" => Some(false),
        v if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes") => Some(true),
        v if v.eq_ignore_ascii_case("false") || v.eq_ignore_ascii_case("no") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names() {
        assert_eq!(UpnpError::ConflictInMappingEntry.code(), 718);
        assert_eq!(UpnpError::NoSuchEntryInArray.code(), 714);
        assert_eq!(
            UpnpError::ConflictWithOtherMechanisms.description(),
            "ConflictWithOtherMechanisms"
        );
        assert_eq!(UpnpError::InvalidArgs.code(), 402);
        assert_eq!(UpnpError::NoSuchEntry.code(), 704);
    }

    #[test]
    fn typed_arguments() {
        let a = Args(vec![
            ("NewExternalPort".into(), " 18080 ".into()),
            ("NewEnabled".into(), "true".into()),
            ("Bad".into(), "70000".into()),
        ]);
        assert_eq!(a.u16("NewExternalPort"), Ok(18080));
        assert_eq!(a.bool("NewEnabled"), Ok(true));
        assert_eq!(a.u16("Bad"), Err(UpnpError::InvalidArgs));
        assert_eq!(a.u16("Missing"), Err(UpnpError::InvalidArgs));
        assert_eq!(parse_bool("maybe"), None);
    }
}
