//! The conflict inbox of a resident's page: profile fields that two devices changed at
//! once hold every concurrent value (Automerge keeps them all); staff and coordinators
//! choose one, which the server writes with the core's `resolve_conflict`.

use super::WebError;
use super::i18n::{Lang, Msgs};
use super::residents::visible;
use super::review::edit_case_file;
use super::session::WebUser;
use super::templates::{ConflictChoice, ConflictLine};
use super::text::date_time;
use crate::error::{Error, Result};
use crate::http::AppState;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::sync::Arc;
use sync_core::doc::casefile::{FieldValue, ProfileField};
use sync_core::doc::conflicts::FieldConflict;
use sync_core::ids::UserId;
use sync_core::model::{LivingSituation, RiskLevel};

/// A profile field's label.
pub(crate) fn field_label(t: &Msgs, field: ProfileField) -> &'static str {
    match field {
        ProfileField::Name => t.name_field,
        ProfileField::Address => t.address,
        ProfileField::Phone => t.phone,
        ProfileField::BirthYear => t.birth_year,
        ProfileField::LivingSituation => t.living_situation,
        ProfileField::EmergencyContact => t.emergency_contact,
        ProfileField::Needs => t.needs,
        ProfileField::RiskLevel => t.risk_level,
        ProfileField::VisitEveryDays => t.visit_every_days,
    }
}

/// A value as shown, and as the form sends it back: (shown, kind, raw).
fn choice(t: &Msgs, field: ProfileField, value: &FieldValue) -> (String, &'static str, String) {
    match value {
        FieldValue::Text(code) if field == ProfileField::LivingSituation => {
            let shown = LivingSituation::from_code(code)
                .map_or(code.clone(), |l| t.living(l.code()).to_owned());
            (shown, "text", code.clone())
        }
        FieldValue::Text(code) if field == ProfileField::RiskLevel => {
            let shown =
                RiskLevel::from_code(code).map_or(code.clone(), |r| t.risk(r.code()).to_owned());
            (shown, "text", code.clone())
        }
        FieldValue::Text(text) => (text.clone(), "text", text.clone()),
        FieldValue::Int(n) => (n.to_string(), "int", n.to_string()),
        FieldValue::Empty => (t.empty_value.to_owned(), "empty", String::new()),
    }
}

/// The page's lines for the case file's conflicts.
pub(crate) fn lines(
    t: &Msgs,
    conflicts: &[FieldConflict],
    person: impl Fn(&UserId) -> String,
) -> Vec<ConflictLine> {
    conflicts
        .iter()
        .map(|c| ConflictLine {
            key: c.field.key(),
            label: field_label(t, c.field),
            values: c
                .values
                .iter()
                .map(|v| {
                    let (shown, kind, raw) = choice(t, c.field, &v.value);
                    ConflictChoice {
                        shown,
                        kind,
                        raw,
                        author: v.user.as_ref().map(&person).unwrap_or_default(),
                        at: date_time(v.at),
                    }
                })
                .collect(),
        })
        .collect()
}

/// The chosen value, from the form.
fn parse(field: &str, kind: &str, raw: &str) -> Result<(ProfileField, FieldValue)> {
    let field = ProfileField::from_key(field.trim())
        .ok_or_else(|| Error::bad_request("bad_field", format!("no profile field {field:?}")))?;
    let value =
        match kind {
            "text" => FieldValue::Text(raw.to_owned()),
            "int" => FieldValue::Int(raw.trim().parse().map_err(|_| {
                Error::bad_request("bad_value", format!("{raw:?} is not a number"))
            })?),
            "empty" => FieldValue::Empty,
            _ => {
                return Err(Error::bad_request(
                    "bad_value",
                    format!("unknown kind {kind:?}"),
                ));
            }
        };
    Ok((field, value))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResolveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    field: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    value: String,
}

/// `POST /web/residents/{resident}/resolve`: keeps one value of a conflicting field.
pub(crate) async fn resolve(
    State(state): State<Arc<AppState>>,
    lang: Lang,
    user: WebUser,
    Path(resident): Path<String>,
    form: Result<Form<ResolveForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(|e| super::unreadable(lang, e))?;
    let written = async {
        user.check_csrf(&form.csrf)?;
        let resident = visible(&state, &user.user, &resident).await?;
        let (field, value) = parse(&form.field, &form.kind, &form.value)?;
        // The core validates the value like any other write of the field.
        field
            .validate(&value)
            .map_err(|why| Error::bad_request("bad_value", why))?;
        edit_case_file(&state, &user, resident, |file, editor| {
            file.resolve_conflict(editor, field, &value)
        })
        .await?;
        tracing::info!(user = %user.user.id, %resident, field = field.key(), "conflict resolved on the web");
        Ok::<_, Error>(resident)
    }
    .await
    .map_err(|e| WebError::new(lang, e))?;
    Ok(Redirect::to(&format!(
        "/web/residents/{}?resolved=1#conflicts",
        written.0
    ))
    .into_response())
}

/// User names used by the lines, for the caller to fetch with the others.
pub(crate) fn authors(conflicts: &[FieldConflict]) -> impl Iterator<Item = UserId> + '_ {
    conflicts
        .iter()
        .flat_map(|c| c.values.iter().filter_map(|v| v.user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_round_trip() {
        let t = &super::super::i18n::EN;
        for (field, value) in [
            (ProfileField::Phone, FieldValue::Text("021-1234".into())),
            (ProfileField::BirthYear, FieldValue::Int(1936)),
            (ProfileField::RiskLevel, FieldValue::Text("high".into())),
            (ProfileField::Needs, FieldValue::Empty),
        ] {
            let (_, kind, raw) = choice(t, field, &value);
            assert_eq!(parse(field.key(), kind, &raw).unwrap(), (field, value));
        }
        assert!(parse("salary", "text", "1").is_err());
        assert!(parse("birth_year", "int", "old").is_err());
        assert!(parse("phone", "blob", "").is_err());
    }

    #[test]
    fn coded_values_are_shown_in_words() {
        let (shown, ..) = choice(
            &super::super::i18n::ZH,
            ProfileField::LivingSituation,
            &FieldValue::Text("alone".into()),
        );
        assert_eq!(shown, "独居");
    }
}
