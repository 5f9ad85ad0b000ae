//! Typed identifiers. Every id is a UUID; ids made on a device are UUIDv7 so that
//! they sort by creation time. The core never reads a clock or a random source, so
//! hosts make the ids and hand them in.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Wraps a UUID made by the host.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The underlying UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// Builds a UUIDv7 from a Unix time in milliseconds and 10 random bytes,
            /// both supplied by the host.
            pub fn new_v7(unix_ms: i64, random: [u8; 10]) -> Self {
                let ms = u64::try_from(unix_ms).unwrap_or(0);
                Self(uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }
    };
}

id_type!(
    /// An Automerge document: a resident's case file or a district's catalog.
    DocId
);
id_type!(
    /// A resident (服务对象). The resident's case file has the same id as a [`DocId`].
    ResidentId
);
id_type!(
    /// One home visit, made on the volunteer's phone.
    VisitId
);
id_type!(
    /// A follow-up ticket opened from a visit.
    FollowUpId
);
id_type!(
    /// A comment on a follow-up ticket.
    CommentId
);
id_type!(
    /// A person with a login: volunteer, station staff, coordinator or admin.
    UserId
);
id_type!(
    /// An enrolled phone.
    DeviceId
);
id_type!(
    /// A sub-district or town (街道, 镇) running the programme.
    DistrictId
);
id_type!(
    /// A service station (党群服务站).
    StationId
);
id_type!(
    /// An alliance (联盟) of member units.
    AllianceId
);
id_type!(
    /// A member unit (单位) of an alliance.
    UnitId
);
id_type!(
    /// A service project (项目) units claim.
    ProjectId
);
id_type!(
    /// A kind of service given in a visit (reading aloud, wiring check, blood pressure…).
    ServiceTypeId
);
id_type!(
    /// A kind of hazard found in a home (worn power strip, gas leak…).
    HazardTypeId
);

impl From<ResidentId> for DocId {
    fn from(id: ResidentId) -> Self {
        DocId(id.0)
    }
}

impl From<DocId> for ResidentId {
    fn from(id: DocId) -> Self {
        ResidentId(id.0)
    }
}

impl From<DistrictId> for DocId {
    /// The catalog document of a district has the district's id.
    fn from(id: DistrictId) -> Self {
        DocId(id.0)
    }
}

/// Milliseconds since the Unix epoch, UTC. Always supplied by the host.
pub type Timestamp = i64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_ids_sort_by_time_and_parse_back() {
        let a = VisitId::new_v7(1_763_942_400_000, [1; 10]);
        let b = VisitId::new_v7(1_763_942_400_001, [0; 10]);
        assert!(a < b);
        assert_eq!(a.0.get_version_num(), 7);
        assert_eq!(a.to_string().parse::<VisitId>().ok(), Some(a));
        assert!("not-a-uuid".parse::<VisitId>().is_err());
        // A negative clock (a broken device) still gives an id, at the epoch.
        assert_eq!(VisitId::new_v7(-5, [0; 10]).0.get_version_num(), 7);
    }
}
