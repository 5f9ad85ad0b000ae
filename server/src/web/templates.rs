//! The pages' templates (`server/templates/`, askama: compiled in, HTML-escaped by
//! default) and what each is given. Strings come from the message catalog; values are
//! prepared in Rust so the templates only lay them out.

use super::i18n::{Lang, Msgs};
use askama::Template;

/// What every page's frame shows: language, the switch, who is signed in.
#[derive(Debug)]
pub(crate) struct Chrome {
    pub t: &'static Msgs,
    pub lang: &'static str,
    pub switch_href: String,
    pub switch_label: &'static str,
    /// The signed-in user's name, and the session's CSRF token for the sign-out form.
    pub user_name: Option<String>,
    pub csrf: String,
    /// Whether the user administers a district (coordinators and admins of one): the
    /// nav links its catalog and users.
    pub admin: bool,
    /// Whether the user may see the district list (admins, with a district or not).
    pub districts: bool,
}

impl Chrome {
    /// The frame for a page at `here`, for `user` (name, CSRF token) if signed in.
    pub fn new(lang: Lang, here: &str, user: Option<(String, String)>) -> Chrome {
        let back = serde_urlencoded::to_string([("back", super::i18n::local_path(here))])
            .unwrap_or_default();
        let (user_name, csrf) = match user {
            Some((name, csrf)) => (Some(name), csrf),
            None => (None, String::new()),
        };
        Chrome {
            t: lang.msgs(),
            lang: lang.html_lang(),
            switch_href: format!("/web/lang/{}?{back}", lang.other().code()),
            switch_label: lang.msgs().switch_to,
            user_name,
            csrf,
            admin: false,
            districts: false,
        }
    }
}

#[derive(Debug, Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub c: Chrome,
    pub error: Option<&'static str>,
    pub login: String,
    pub form_token: String,
    pub next: String,
}

#[derive(Debug, Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub c: Chrome,
    pub message: &'static str,
    pub detail: String,
}

/// One option of a filter menu.
#[derive(Debug)]
pub(crate) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// A filter menu.
#[derive(Debug)]
pub(crate) struct Select {
    pub name: &'static str,
    pub label: &'static str,
    pub choices: Vec<Choice>,
    /// What the empty choice means, when it is not "any".
    pub empty: Option<&'static str>,
}

impl Select {
    pub fn new(name: &'static str, label: &'static str, choices: Vec<Choice>) -> Self {
        Select {
            name,
            label,
            choices,
            empty: None,
        }
    }

    /// The menu with its empty choice labelled `label` (a default that is not "any").
    pub fn empty_means(mut self, label: &'static str) -> Self {
        self.empty = Some(label);
        self
    }
}

/// A row of the visit log.
#[derive(Debug)]
pub(crate) struct VisitLine {
    pub href: String,
    pub resident: String,
    pub when: String,
    pub station: String,
    pub volunteer: String,
    pub project: String,
    pub minutes: i64,
    pub wellbeing: &'static str,
    pub services: String,
    pub hazards: String,
    pub hazards_found: i64,
    pub review: &'static str,
    pub review_code: &'static str,
    pub follow_up: bool,
    /// The resident's profile holds unresolved conflicting values.
    pub conflict: bool,
}

#[derive(Debug, Template)]
#[template(path = "visits.html")]
pub(crate) struct VisitsPage {
    pub c: Chrome,
    pub from: String,
    pub to: String,
    pub selects: Vec<Select>,
    pub lines: Vec<VisitLine>,
    pub first: Option<String>,
    pub next: Option<String>,
    /// `?…`: the filters (not the page), for the export links; empty if none.
    pub export_query: String,
}

/// A visit on a resident's timeline.
#[derive(Debug)]
pub(crate) struct TimelineVisit {
    pub anchor: String,
    pub when: String,
    pub volunteer: String,
    pub project: String,
    pub minutes: i64,
    pub wellbeing: &'static str,
    pub blood_pressure: String,
    pub remarks: String,
    pub notes: String,
    pub services: String,
    pub hazards: String,
    pub follow_up: bool,
    pub deleted: bool,
    pub review: &'static str,
    pub review_code: &'static str,
    pub reviewer: String,
    pub reviewed_at: String,
    pub review_comment: String,
    /// Where the review form posts; empty when the user may not review.
    pub review_action: String,
    /// The visit's id, for the "open a follow-up" form.
    pub id: String,
    /// Whether the visit offers the "open a follow-up" form (hazards or a concern).
    pub open_form: bool,
    /// That form's title, prefilled from the hazards or the concern.
    pub open_title: String,
    /// That form's owners: the general ones and the visit's volunteer.
    pub open_owners: Vec<Choice>,
}

/// A follow-up ticket on a resident's page.
#[derive(Debug)]
pub(crate) struct FollowUpLine {
    pub href: String,
    pub title: String,
    pub owner: String,
    pub overdue: bool,
    pub status: &'static str,
    pub deadline: String,
    pub opened: String,
    pub comments: i64,
}

/// One of a conflicting field's values, and how the form sends it back.
#[derive(Debug)]
pub(crate) struct ConflictChoice {
    pub shown: String,
    /// `text`, `int` or `empty`.
    pub kind: &'static str,
    pub raw: String,
    pub author: String,
    pub at: String,
}

/// A profile field holding concurrent values.
#[derive(Debug)]
pub(crate) struct ConflictLine {
    pub key: &'static str,
    pub label: &'static str,
    pub values: Vec<ConflictChoice>,
}

/// One change of the case file's history.
#[derive(Debug)]
pub(crate) struct HistoryLine {
    pub when: String,
    pub who: String,
    pub device: String,
    pub what: String,
}

#[derive(Debug, Template)]
#[template(path = "resident.html")]
pub(crate) struct ResidentPage {
    pub c: Chrome,
    pub name: String,
    pub station: String,
    pub facts: Vec<(&'static str, String)>,
    pub visits: Vec<TimelineVisit>,
    pub follow_ups: Vec<FollowUpLine>,
    pub conflicts: Vec<ConflictLine>,
    /// Where conflict choices post; empty when the user may not edit.
    pub resolve_action: String,
    pub history: Vec<HistoryLine>,
    /// Whether older changes were left out.
    pub history_cut: bool,
    pub notice: Option<&'static str>,
    pub m: &'static super::i18n::FollowUpMsgs,
    /// Where "open a follow-up" forms post; empty when the user may not edit.
    pub open_action: String,
    /// The owners offered for a ticket not tied to a visit.
    pub owners: Vec<Choice>,
    /// Volunteers, profile and station forms; `None` when the user may not edit.
    pub care: Option<super::care::CareForms>,
    /// A closed case file's banner.
    pub closed: Option<String>,
    /// For coordinators and admins: the link to this file's access log, and its text.
    pub access_link: Option<(String, &'static str)>,
}

// ---- Statistics (`stats.rs`) ---------------------------------------------------

#[derive(Debug, Template)]
#[template(path = "stats.html")]
pub(crate) struct StatsPage {
    pub c: Chrome,
    pub s: &'static super::i18n::StatsMsgs,
    pub from: String,
    pub to: String,
    pub by: Select,
    pub selects: Vec<Select>,
    pub lines: Vec<super::stats::GroupLine>,
    pub chart: super::stats::ChartSvg,
    pub totals: super::stats::Figures,
    pub total_hours: String,
    pub total_href: String,
}

/// A row of the follow-up list.
#[derive(Debug)]
pub(crate) struct FollowUpItem {
    pub href: String,
    /// The ticket's page.
    pub ticket_href: String,
    pub resident: String,
    pub station: String,
    pub title: String,
    pub status: &'static str,
    pub overdue: bool,
    pub deadline: String,
    pub owner: String,
    pub opened: String,
    pub comments: i64,
}

#[derive(Debug, Template)]
#[template(path = "follow_ups.html")]
pub(crate) struct FollowUpsPage {
    pub c: Chrome,
    pub selects: Vec<Select>,
    pub lines: Vec<FollowUpItem>,
    pub previous: Option<String>,
    pub next: Option<String>,
}

/// A resident whose visit is due.
#[derive(Debug)]
pub(crate) struct DueLine {
    pub href: String,
    pub name: String,
    pub station: String,
    pub last_visit: String,
    pub every: i64,
    pub status: &'static str,
    pub days_overdue: String,
    pub risk: String,
}

#[derive(Debug, Template)]
#[template(path = "due.html")]
pub(crate) struct DuePage {
    pub c: Chrome,
    pub selects: Vec<Select>,
    pub lines: Vec<DueLine>,
    pub previous: Option<String>,
    pub next: Option<String>,
}

/// A row of the resident list.
#[derive(Debug)]
pub(crate) struct ResidentLine {
    pub href: String,
    pub name: String,
    pub address: String,
    pub station: String,
    pub risk: &'static str,
    pub last_visit: String,
    pub live_visits: i64,
    pub open_follow_ups: i64,
    pub conflicts: i64,
    /// Why the case file was closed, when it is.
    pub closed: Option<&'static str>,
}

#[derive(Debug, Template)]
#[template(path = "residents.html")]
pub(crate) struct ResidentsPage {
    pub c: Chrome,
    pub r: &'static super::i18n::ResidentListMsgs,
    pub notice: Option<&'static str>,
    pub q: String,
    pub conflicts_only: bool,
    pub selects: Vec<Select>,
    pub lines: Vec<ResidentLine>,
    pub previous: Option<String>,
    pub next: Option<String>,
}

// ---- Follow-up tickets (`follow_ups.rs`) -------------------------------------------

/// A comment on a ticket.
#[derive(Debug)]
pub(crate) struct CommentLine {
    pub author: String,
    pub at: String,
    pub text: String,
}

#[derive(Debug, Template)]
#[template(path = "follow_up.html")]
pub(crate) struct FollowUpPage {
    pub c: Chrome,
    pub m: &'static super::i18n::FollowUpMsgs,
    pub resident: String,
    pub resident_href: String,
    pub station: String,
    pub title: String,
    pub status: &'static str,
    pub status_code: &'static str,
    pub owner: String,
    pub deadline: String,
    pub overdue: bool,
    pub opened_by: String,
    pub opened_at: String,
    /// The visit it came from, on the resident's page; empty if none.
    pub visit_href: String,
    pub visit_label: String,
    pub closed_by: String,
    pub closed_at: String,
    pub resolution: String,
    /// Comments, oldest first.
    pub comments: Vec<CommentLine>,
    /// Where each form posts; empty when it is not offered.
    pub comment_action: String,
    pub assign_action: String,
    pub close_action: String,
    pub owners: Vec<Choice>,
    /// The deadline as the date input's value.
    pub deadline_value: String,
    pub notice: Option<&'static str>,
}
