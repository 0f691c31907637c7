use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

/// What went wrong with the HSM, in terms a caller can act on.
///
/// Messages never contain key material or PINs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The module cannot be loaded, the token is absent, or the device failed:
    /// callers fail closed (503) and retry later.
    #[error("HSM unavailable: {0}")]
    HsmUnavailable(String),
    /// The token refused the PIN (wrong, locked, or not initialised).
    #[error("HSM rejected the PIN: {0}")]
    BadPin(String),
    /// The PIN file or credential is missing, unreadable or too permissive.
    #[error("PIN source {path}: {reason}")]
    PinSource { path: String, reason: String },
    /// A key with this label does not exist in the token.
    #[error("HSM key not found: {0}")]
    KeyNotFound(String),
    /// Authenticated decryption failed: wrong user, wrong version, or tampering.
    #[error("wrapped key failed its integrity check")]
    IntegrityFailure,
    /// A stored blob does not parse as a wrapped key.
    #[error("malformed wrapped key: {0}")]
    Malformed(&'static str),
    /// Locked memory for the plaintext could not be had.
    #[error(transparent)]
    SecretMemory(#[from] arclock_secmem::Error),
    /// Any other PKCS#11 failure, named by function and return value.
    #[error("PKCS#11 {function}: {rv}")]
    Pkcs11 { function: String, rv: String },
}

impl Error {
    /// Whether the session (or the token behind it) is gone, so the pool must
    /// reconnect rather than reuse it.
    pub(crate) fn is_connection_lost(&self) -> bool {
        matches!(self, Error::HsmUnavailable(_))
    }
}

pub(crate) fn from_ck(err: CkError) -> Error {
    match err {
        CkError::LibraryLoading(e) => {
            Error::HsmUnavailable(format!("cannot load PKCS#11 module: {e}"))
        }
        CkError::Pkcs11(rv, function) => from_rv(rv, function),
        other => Error::Pkcs11 {
            function: "cryptoki".into(),
            rv: other.to_string(),
        },
    }
}

fn from_rv(rv: RvError, function: Function) -> Error {
    use RvError::*;
    match rv {
        TokenNotPresent
        | TokenNotRecognized
        | DeviceRemoved
        | DeviceError
        | DeviceMemory
        | SessionClosed
        | SessionHandleInvalid
        | SlotIdInvalid
        | CryptokiNotInitialized
        | UserNotLoggedIn
        | GeneralError
        | FunctionFailed => Error::HsmUnavailable(format!("{function}: {rv}")),
        // A cached handle outlived its object (token re-inserted or object
        // destroyed elsewhere): treated as a lost connection so the pool looks
        // the key up again; a key that is really gone then reports KeyNotFound.
        ObjectHandleInvalid | KeyHandleInvalid => {
            Error::HsmUnavailable(format!("{function}: stale object handle"))
        }
        PinIncorrect
        | PinInvalid
        | PinLenRange
        | PinExpired
        | PinLocked
        | UserPinNotInitialized => Error::BadPin(format!("{rv}")),
        EncryptedDataInvalid | EncryptedDataLenRange | DataInvalid | DataLenRange => {
            Error::IntegrityFailure
        }
        _ => Error::Pkcs11 {
            function: function.to_string(),
            rv: rv.to_string(),
        },
    }
}
