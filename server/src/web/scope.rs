//! What a web user may see, as SQL: every page query is built with [`Sql`] and starts
//! its `WHERE` clause with [`Sql::scope`], so a filter or a crafted URL can only
//! narrow what the scope allows. Values are always bound, never spliced.

use crate::error::{Error, Result};
use crate::identity::User;
use sync_core::model::Role;

/// A bound value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Bind {
    Bytes(Vec<u8>),
    Int(i64),
    Text(String),
}

impl Bind {
    /// An id (a UUID, or a newtype's inner one) as its 16 stored bytes.
    pub fn id(id: &uuid::Uuid) -> Bind {
        Bind::Bytes(id.as_bytes().to_vec())
    }
}

/// A query being built: text with `$n` placeholders (both backends read them) and the
/// values in order.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Sql {
            text: text.to_owned(),
            binds: Vec::new(),
        }
    }

    /// Appends literal SQL (never user input).
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        self.text.push('$');
        self.text.push_str(&self.binds.len().to_string());
        self
    }

    /// Appends `(v1, v2, …)` for a non-empty list, or `(NULL)` (matches nothing).
    pub fn bind_list(&mut self, values: impl IntoIterator<Item = Bind>) -> &mut Self {
        self.push("(");
        let mut any = false;
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(v);
            any = true;
        }
        if !any {
            self.push("NULL");
        }
        self.push(")")
    }

    /// Appends the condition that a row whose district and station are the columns
    /// `district` and `station` lies in `user`'s scope: admins everything; coordinators their district;
    /// staff the stations they cover now (read from `staff_stations` in the same query,
    /// so a change of stations applies at once). Volunteers see nothing on the web.
    pub fn scope(&mut self, user: &User, district: &str, station: &str) -> Result<&mut Self> {
        match (user.role, user.district) {
            (Role::Admin, _) => self.push("1 = 1"),
            (Role::Coordinator, Some(d)) => self.push(district).push(" = ").bind(Bind::id(&d.0)),
            (Role::StationStaff, Some(d)) => self
                .push(district)
                .push(" = ")
                .bind(Bind::id(&d.0))
                .push(" AND ")
                .push(station)
                .push(" IN (SELECT station FROM staff_stations WHERE user_id = ")
                .bind(Bind::id(&user.id.0))
                .push(")"),
            (Role::Coordinator | Role::StationStaff, None) => self.push("1 = 0"),
            (Role::Volunteer, _) => {
                return Err(Error::Forbidden(
                    "volunteers use the phone app, not the web pages".into(),
                ));
            }
        };
        Ok(self)
    }
}

/// Runs `$sql` (a [`Sql`]) on the store's pool as `$method` (`fetch_all`, …) of
/// `sqlx::query_as` into `$row`.
macro_rules! fetch {
    ($store:expr, $sql:expr, $row:ty, $method:ident) => {{
        let sql: $crate::web::scope::Sql = $sql;
        $crate::store::with_pool!($store, p => {
            // The text is built from literal fragments and placeholders only; every
            // value is bound below.
            let mut q = sqlx::query_as::<_, $row>(sqlx::AssertSqlSafe(sql.text));
            for b in sql.binds {
                q = match b {
                    $crate::web::scope::Bind::Bytes(v) => q.bind(v),
                    $crate::web::scope::Bind::Int(v) => q.bind(v),
                    $crate::web::scope::Bind::Text(v) => q.bind(v),
                };
            }
            q.$method(p).await.map_err($crate::error::Error::from)
        })
    }};
}
pub(crate) use fetch;

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::ids::{DistrictId, UserId};
    use uuid::Uuid;

    fn user(role: Role, district: Option<u128>) -> User {
        User {
            id: UserId(Uuid::from_u128(1)),
            login: "u".into(),
            display_name: "u".into(),
            role,
            district: district.map(|d| DistrictId(Uuid::from_u128(d))),
            disabled: false,
        }
    }

    #[test]
    fn scopes_are_bound_conditions() {
        let mut q = Sql::new("SELECT 1 FROM visit_rows v WHERE ");
        q.scope(
            &user(Role::StationStaff, Some(7)),
            "v.district",
            "v.station",
        )
        .unwrap();
        assert_eq!(
            q.text,
            "SELECT 1 FROM visit_rows v WHERE v.district = $1 AND v.station IN \
             (SELECT station FROM staff_stations WHERE user_id = $2)"
        );
        assert_eq!(q.binds.len(), 2);

        let mut q = Sql::new("");
        q.scope(&user(Role::Coordinator, Some(7)), "r.district", "r.station")
            .unwrap();
        assert_eq!(q.text, "r.district = $1");
        let mut q = Sql::new("");
        q.scope(&user(Role::Coordinator, None), "r.district", "r.station")
            .unwrap();
        assert_eq!(q.text, "1 = 0");
        assert!(
            Sql::new("")
                .scope(&user(Role::Volunteer, Some(7)), "r.district", "r.station")
                .is_err()
        );
    }

    #[test]
    fn empty_lists_match_nothing() {
        let mut q = Sql::new("x IN ");
        q.bind_list([]);
        assert_eq!(q.text, "x IN (NULL)");
        let mut q = Sql::new("x IN ");
        q.bind_list([Bind::Int(1), Bind::Int(2)]);
        assert_eq!(q.text, "x IN ($1, $2)");
    }
}
