//! What every engine error shares: its CNI error code (each module's error knows its own, and
//! delegates to its cause), and [`Several`], the aggregate of a verb that tried everything and
//! collected the failures (DEL, GC, a conflist's DEL).
use std::fmt;

use multus_common::code;
use multus_common::result::ResultError;

use crate::source::SourceError;

/// The CNI spec error code an error is reported with.
pub trait CniCode {
    fn cni_code(&self) -> u32;

    /// The plugin's own `details`, when the error is a plugin's CNI error.
    fn cni_details(&self) -> Option<&str> {
        None
    }
}

/// Two or more failures of one verb, in the order they happened. The first one is the one
/// reported: its code and details are the aggregate's.
#[derive(Debug)]
pub struct Several<E>(Vec<E>);

impl<E> Several<E> {
    /// `Ok` for no errors, the error itself for one, the aggregate (wrapped by `wrap`) for more.
    pub fn collect(mut errors: Vec<E>, wrap: impl FnOnce(Self) -> E) -> Result<(), E> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(wrap(Self(errors))),
        }
    }

    /// The first failure (an aggregate always has one).
    pub fn first(&self) -> Option<&E> {
        self.0.first()
    }

    pub fn iter(&self) -> impl Iterator<Item = &E> {
        self.0.iter()
    }
}

impl<E> From<Vec<E>> for Several<E> {
    fn from(errors: Vec<E>) -> Self {
        Self(errors)
    }
}

impl<E: fmt::Display> fmt::Display for Several<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" / ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl<E: CniCode> CniCode for Several<E> {
    fn cni_code(&self) -> u32 {
        self.first().map_or(code::INTERNAL, CniCode::cni_code)
    }

    fn cni_details(&self) -> Option<&str> {
        self.first().and_then(CniCode::cni_details)
    }
}

/// A pod or NAD lookup: unreachable is worth a retry, an invalid object is a config error.
impl CniCode for SourceError {
    fn cni_code(&self) -> u32 {
        match self {
            SourceError::Unavailable { .. } => code::TRY_AGAIN_LATER,
            SourceError::Invalid { .. } | SourceError::Replaced { .. } => {
                code::INVALID_NETWORK_CONFIG
            }
        }
    }
}

impl CniCode for ResultError {
    fn cni_code(&self) -> u32 {
        match self {
            ResultError::UnknownVersion(_) => code::INCOMPATIBLE_VERSION,
            ResultError::NotAnObject => code::INTERNAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(u32);

    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "e{}", self.0)
        }
    }

    impl CniCode for E {
        fn cni_code(&self) -> u32 {
            self.0
        }
    }

    #[test]
    fn collect_and_report_the_first() {
        let wrap = |s: Several<E>| E(s.cni_code() + 100);
        assert!(Several::collect(Vec::new(), wrap).is_ok());
        assert_eq!(Several::collect(vec![E(7)], wrap).unwrap_err().0, 7);
        assert_eq!(Several::collect(vec![E(7), E(3)], wrap).unwrap_err().0, 107);
        let s = Several::from(vec![E(4), E(5)]);
        assert_eq!((s.to_string(), s.cni_code()), ("e4 / e5".into(), 4));
        assert_eq!(Several::<E>::from(Vec::new()).cni_code(), code::INTERNAL);
    }
}
