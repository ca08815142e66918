//! PutMedia ErrorIds: their codes and what a producer does about each
//! (PIC's `serviceCallResultRetry`, reference §5).

/// What the producer does after an ERROR ACK (the service closes the
/// connection after every one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reconnect and send the fragment again.
    Retry,
    /// Mark the fragment skipped and never send it again.
    Skip,
    /// The stream itself is gone or inactive: stop uploading it until the
    /// control plane says otherwise.
    Terminal,
}

/// A known ErrorId: its number, code, and the action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorKind {
    /// The `ErrorId` on the wire.
    pub id: u32,
    /// The `ErrorCode` the service sends with it.
    pub code: &'static str,
    /// What the producer does.
    pub action: Action,
}

const KNOWN: &[ErrorKind] = &[
    ErrorKind {
        id: 4000,
        code: "STREAM_READ_ERROR",
        action: Action::Retry,
    },
    ErrorKind {
        id: 4001,
        code: "MAX_FRAGMENT_SIZE_REACHED",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4002,
        code: "MAX_FRAGMENT_DURATION_REACHED",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4003,
        code: "MAX_CONNECTION_DURATION_REACHED",
        action: Action::Retry,
    },
    ErrorKind {
        id: 4004,
        code: "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4005,
        code: "MORE_THAN_ALLOWED_TRACKS_FOUND",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4006,
        code: "INVALID_MKV_DATA",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4007,
        code: "INVALID_PRODUCER_TIMESTAMP",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4008,
        code: "STREAM_NOT_ACTIVE",
        action: Action::Terminal,
    },
    ErrorKind {
        id: 4009,
        code: "FRAGMENT_METADATA_LIMIT_REACHED",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4010,
        code: "TRACK_NUMBER_MISMATCH",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4011,
        code: "FRAMES_MISSING_FOR_TRACK",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4012,
        code: "MORE_THAN_ALLOWED_TRACKS_FOUND",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4500,
        code: "KMS_KEY_ACCESS_DENIED",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4501,
        code: "KMS_KEY_DISABLED",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4502,
        code: "KMS_KEY_VALIDATION_ERROR",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4503,
        code: "KMS_KEY_UNAVAILABLE",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4504,
        code: "KMS_KEY_INVALID_USAGE",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4505,
        code: "KMS_KEY_INVALID_STATE",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4506,
        code: "KMS_KEY_NOT_FOUND",
        action: Action::Skip,
    },
    ErrorKind {
        id: 4507,
        code: "STREAM_DELETED",
        action: Action::Terminal,
    },
    ErrorKind {
        id: 5000,
        code: "INTERNAL_ERROR",
        action: Action::Retry,
    },
    ErrorKind {
        id: 5001,
        code: "ARCHIVAL_ERROR",
        action: Action::Retry,
    },
];

/// The known ErrorId `id`, if it is one.
pub fn known(id: u32) -> Option<&'static ErrorKind> {
    KNOWN.iter().find(|k| k.id == id)
}

/// What to do about ErrorId `id`. An id this table does not know is
/// retried, as PIC does with unknown results: skipping would lose media
/// for an error that may well be transient.
pub fn action(id: u32) -> Action {
    known(id).map_or(Action::Retry, |k| k.action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_id_has_the_references_action() {
        for id in [4001, 4002, 4004, 4005, 4006, 4007, 4009, 4010, 4011, 4012, 4500, 4506] {
            assert_eq!(action(id), Action::Skip, "{id}");
        }
        for id in [4000, 4003, 5000, 5001] {
            assert_eq!(action(id), Action::Retry, "{id}");
        }
        assert_eq!(action(4008), Action::Terminal);
        assert_eq!(action(4507), Action::Terminal);
        assert_eq!(action(4999), Action::Retry, "unknown ids are retried");
        assert_eq!(known(4006).unwrap().code, "INVALID_MKV_DATA");
    }

    #[test]
    fn ids_are_unique() {
        let mut ids: Vec<u32> = KNOWN.iter().map(|k| k.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), KNOWN.len());
    }
}
