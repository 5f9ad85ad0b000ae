//! The pages' languages and their message catalog: every string a page shows, in
//! Chinese (the default) and English. A struct rather than a lookup table, so a string
//! missing in one language is a compile error, not a blank on a page.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::Deserialize;

/// The cookie that remembers the chosen language.
pub(crate) const LANG_COOKIE: &str = "linli_lang";

/// A page language.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Lang {
    /// 简体中文, the default.
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    /// The code in URLs and the cookie, and the page's `lang` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The `<html lang>` value.
    pub fn html_lang(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The other language, offered by the switch.
    pub fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    /// The catalog.
    pub fn msgs(self) -> &'static Msgs {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }
}

impl Lang {
    /// What a 400's stable code means, said to the page's reader. The error's own
    /// message (which names the value at fault, in English) is shown beneath it as a
    /// technical detail. `None` for codes whose message is already in the page's
    /// language (the roster's and the exports' own).
    pub fn bad_request_reason(self, code: &str) -> Option<&'static str> {
        let (zh, en) = match code {
            "malformed" => (
                "链接或表单的内容无法读取，请返回上一页重新填写。",
                "The link or form could not be read; go back and fill it in again.",
            ),
            "bad_date" => (
                "日期应写成“年-月-日”，例如 2026-03-01。",
                "Dates are written year-month-day, for example 2026-03-01.",
            ),
            "bad_filter" => (
                "筛选条件无法识别，请用页面上的菜单选择。",
                "A filter was not recognised; choose it from the page's menus.",
            ),
            "bad_page" | "bad_cursor" => (
                "翻页链接已失效，请从第一页重新开始。",
                "The page link no longer works; start again from the first page.",
            ),
            "too_many_months" => (
                "按月统计的时间段太长，请缩短到 20 年以内。",
                "The period is too long to count by month; shorten it to 20 years or less.",
            ),
            "bad_status" => (
                "请选择“通过”或“需要关注”。",
                "Choose either approve or needs attention.",
            ),
            "bad_field" | "bad_value" => (
                "所选的值无效，请刷新页面后重新选择。",
                "The chosen value is not valid; reload the page and choose again.",
            ),
            "bad_file" => (
                "上传的文件已损坏，请重新上传。",
                "The uploaded file was damaged on the way; upload it again.",
            ),
            // Follow-ups (`follow_ups.rs`).
            "empty_title" => (
                "请填写跟进事项的内容。",
                "Write what the follow-up is about.",
            ),
            "empty_comment" => ("留言不能为空。", "A comment cannot be empty."),
            "empty_resolution" => (
                "关闭跟进事项时请写明处理结果。",
                "Say how the follow-up was resolved before closing it.",
            ),
            "too_long" => (
                "内容太长：事项最多 200 字，留言和处理结果最多 4000 字。",
                "Too long: a title has at most 200 characters, a comment or resolution 4000.",
            ),
            "unknown_owner" => (
                "所选负责人不能负责此事项，请刷新页面后从菜单中选择。",
                "That person cannot own this follow-up; reload the page and choose from the menu.",
            ),
            "bad_deadline" => (
                "期限应在 2020 年至 2099 年之间。",
                "The deadline must lie between 2020 and 2099.",
            ),
            "already_closed" => ("该跟进事项已经关闭。", "This follow-up is already closed."),
            // Administration (admin.rs).
            "empty_name" => ("名称不能为空。", "The name must not be empty."),
            "name_too_long" => (
                "名称太长：最多 200 个字符。",
                "The name is too long: at most 200 characters.",
            ),
            "control_character" => (
                "名称中含有控制字符（例如从别处粘贴来的不可见字符），请删去后重试。",
                "The name holds a control character (an invisible one, often pasted); remove it and try again.",
            ),
            "bad_id" => (
                "链接中的编号无效，请从列表重新打开。",
                "The id in the link is not valid; open it again from the list.",
            ),
            "bad_parent" => (
                "请从菜单中选择一个未停用的联盟。",
                "Choose an alliance that is not archived from the menu.",
            ),
            "unknown_role" => (
                "请从菜单中选择您可以创建的角色。",
                "Choose a role you may create from the menu.",
            ),
            "invalid_login" => (
                "登录名应为 1 至 64 个字符，不含控制字符。",
                "A login has 1 to 64 characters, none of them a control character.",
            ),
            "login_taken" => (
                "该登录名已被使用，请换一个。",
                "This login is taken; choose another.",
            ),
            "district_taken" => (
                "已有同名的街镇，请换一个名称。",
                "A district of this name exists; choose another name.",
            ),
            "station_taken" => (
                "本街镇已有同名的服务站。",
                "The district already has a station of this name.",
            ),
            "weak_password" => (
                "密码至少 10 个字符。",
                "A password has at least 10 characters.",
            ),
            "bad_profile" | "invalid" => (
                "填写的内容不符合要求（例如走访间隔须为 1–365 天），请修改后再保存。",
                "A value is not valid (a visit interval is 1 to 365 days, say): correct it and save again.",
            ),
            "unknown_district" => ("没有这个街镇。", "There is no such district."),
            "unknown_station" | "stations_for_staff" => (
                "只有服务站工作人员负责服务站，且须是本街镇的服务站。",
                "Only station staff cover stations, and only this district's.",
            ),
            _ => return None,
        };
        Some(match self {
            Lang::Zh => zh,
            Lang::En => en,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        Ok(jar
            .get(LANG_COOKIE)
            .and_then(|c| Lang::from_code(c.value()))
            .unwrap_or_default())
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SwitchQuery {
    #[serde(default)]
    back: String,
}

/// A path on this site under `/web/` to return to, or the visit log. Anything else (an
/// absolute URL, `//host`, a backslash trick) is refused: no open redirect.
pub(crate) fn local_path(back: &str) -> &str {
    let safe = back.starts_with("/web/")
        && !back.contains("//")
        && !back.contains('\\')
        && back.chars().all(|c| !c.is_control());
    if safe { back } else { "/web/visits" }
}

/// `GET /web/lang/{code}?back=…`: remembers the language for a year and goes back.
pub(crate) async fn switch(
    axum::extract::Path(code): axum::extract::Path<String>,
    Query(query): Query<SwitchQuery>,
    jar: CookieJar,
) -> Response {
    let lang = Lang::from_code(&code).unwrap_or_default();
    let cookie = Cookie::build((LANG_COOKIE, lang.code()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::days(365))
        .build();
    (jar.add(cookie), Redirect::to(local_path(&query.back))).into_response()
}

/// Every string the pages show.
#[derive(Debug)]
pub(crate) struct Msgs {
    pub lang: Lang,
    pub app_name: &'static str,
    pub switch_to: &'static str,
    pub nav_visits: &'static str,
    pub signed_in_as: &'static str,
    pub logout: &'static str,
    // Sign-in.
    pub login_title: &'static str,
    pub login_name: &'static str,
    pub password: &'static str,
    pub login_button: &'static str,
    pub login_failed: &'static str,
    pub login_volunteer: &'static str,
    pub login_expired_form: &'static str,
    pub login_rate_limited: &'static str,
    // Visit log.
    pub visits_title: &'static str,
    pub filter: &'static str,
    pub clear_filters: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub any: &'static str,
    pub station: &'static str,
    pub alliance: &'static str,
    pub unit: &'static str,
    pub project: &'static str,
    pub volunteer: &'static str,
    pub service: &'static str,
    pub hazards: &'static str,
    pub hazards_yes: &'static str,
    pub hazards_no: &'static str,
    pub review: &'static str,
    pub when: &'static str,
    pub resident: &'static str,
    pub minutes: &'static str,
    pub wellbeing: &'static str,
    pub services: &'static str,
    pub follow_up: &'static str,
    pub no_visits: &'static str,
    pub next_page: &'static str,
    pub first_page: &'static str,
    pub fixed_on_spot: &'static str,
    pub not_fixed: &'static str,
    // Resident page.
    pub profile: &'static str,
    pub address: &'static str,
    pub phone: &'static str,
    pub birth_year: &'static str,
    pub living_situation: &'static str,
    pub emergency_contact: &'static str,
    pub needs: &'static str,
    pub risk_level: &'static str,
    pub visit_every_days: &'static str,
    pub last_visit: &'static str,
    pub live_visits: &'static str,
    pub open_follow_ups: &'static str,
    pub timeline: &'static str,
    pub follow_ups: &'static str,
    pub deadline: &'static str,
    pub status: &'static str,
    pub deleted: &'static str,
    pub notes: &'static str,
    pub remarks: &'static str,
    pub blood_pressure: &'static str,
    pub reviewed_by: &'static str,
    pub comment: &'static str,
    pub approve: &'static str,
    pub needs_attention: &'static str,
    pub review_sent: &'static str,
    pub not_yet: &'static str,
    pub name_field: &'static str,
    pub conflicts: &'static str,
    pub no_conflicts: &'static str,
    pub conflicts_help: &'static str,
    pub use_value: &'static str,
    pub empty_value: &'static str,
    pub resolved: &'static str,
    pub history: &'static str,
    pub history_latest: &'static str,
    pub who: &'static str,
    pub device: &'static str,
    pub web_device: &'static str,
    pub server_device: &'static str,
    pub what: &'static str,
    pub case_file: &'static str,
    pub visit_word: &'static str,
    pub follow_up_word: &'static str,
    // Errors.
    pub nav_follow_ups: &'static str,
    pub nav_due: &'static str,
    pub follow_ups_title: &'static str,
    pub overdue: &'static str,
    pub owner: &'static str,
    pub opened: &'static str,
    pub comments: &'static str,
    pub no_follow_ups: &'static str,
    pub due_title: &'static str,
    pub due_help: &'static str,
    pub never_visited: &'static str,
    pub days_overdue: &'static str,
    pub due_today: &'static str,
    pub due_status: &'static str,
    pub no_due: &'static str,
    pub previous_page: &'static str,
    pub error_title: &'static str,
    pub error_bad_request: &'static str,
    pub error_forbidden: &'static str,
    pub error_not_found: &'static str,
    pub error_conflict: &'static str,
    pub error_rate_limited: &'static str,
    pub error_unavailable: &'static str,
    pub error_internal: &'static str,
    pub back_to_log: &'static str,
}

impl Msgs {
    /// A review status, by code.
    pub fn review_status(&self, code: &str) -> &'static str {
        match (code, self.lang == Lang::Zh) {
            ("approved", true) => "已通过",
            ("approved", false) => "Approved",
            ("needs_attention", true) => "需关注",
            ("needs_attention", false) => "Needs attention",
            (_, true) => "待审核",
            (_, false) => "Pending",
        }
    }

    /// A wellbeing, by code.
    pub fn wellbeing(&self, code: &str) -> &'static str {
        match (code, self.lang == Lang::Zh) {
            ("good", true) => "良好",
            ("good", false) => "Good",
            ("fair", true) => "一般",
            ("fair", false) => "Fair",
            ("poor", true) => "较差",
            ("poor", false) => "Poor",
            ("urgent", true) => "紧急",
            ("urgent", false) => "Urgent",
            (_, true) => "未知",
            (_, false) => "Unknown",
        }
    }

    /// A hazard severity, by code.
    pub fn severity(&self, code: &str) -> &'static str {
        match (code, self.lang == Lang::Zh) {
            ("low", true) => "低",
            ("low", false) => "low",
            ("medium", true) => "中",
            ("medium", false) => "medium",
            ("high", true) => "高",
            ("high", false) => "high",
            ("critical", true) => "危急",
            ("critical", false) => "critical",
            (_, true) => "未知",
            (_, false) => "unknown",
        }
    }

    /// A risk level, by code (empty when unset).
    pub fn risk(&self, code: &str) -> &'static str {
        match code {
            "low" | "medium" | "high" => self.severity(code),
            _ => "",
        }
    }

    /// A living situation, by code (empty when unset).
    pub fn living(&self, code: &str) -> &'static str {
        match (code, self.lang == Lang::Zh) {
            ("alone", true) => "独居",
            ("alone", false) => "Alone",
            ("with_spouse", true) => "与配偶同住",
            ("with_spouse", false) => "With spouse",
            ("with_family", true) => "与家人同住",
            ("with_family", false) => "With family",
            ("other", true) => "其他",
            ("other", false) => "Other",
            _ => "",
        }
    }

    /// A follow-up status, by code.
    pub fn follow_up_status(&self, code: &str) -> &'static str {
        match (code, self.lang == Lang::Zh) {
            ("closed", true) => "已关闭",
            ("closed", false) => "Closed",
            (_, true) => "处理中",
            (_, false) => "Open",
        }
    }
}

pub(crate) const ZH: Msgs = Msgs {
    lang: Lang::Zh,
    app_name: "邻里",
    switch_to: "English",
    nav_visits: "走访记录",
    signed_in_as: "当前用户",
    logout: "退出登录",
    login_title: "登录",
    login_name: "用户名",
    password: "密码",
    login_button: "登录",
    login_failed: "用户名或密码不正确。",
    login_volunteer: "志愿者请使用手机应用记录走访；网页供服务站工作人员和协调员使用。",
    login_expired_form: "登录页面已过期，请重新输入。",
    login_rate_limited: "尝试次数过多，请稍后再试。",
    visits_title: "走访记录",
    filter: "筛选",
    clear_filters: "清除筛选",
    from: "开始日期",
    to: "结束日期",
    any: "全部",
    station: "服务站",
    alliance: "联盟",
    unit: "单位",
    project: "项目",
    volunteer: "志愿者",
    service: "服务内容",
    hazards: "隐患",
    hazards_yes: "发现隐患",
    hazards_no: "未发现隐患",
    review: "审核",
    when: "时间",
    resident: "服务对象",
    minutes: "分钟",
    wellbeing: "状况",
    services: "服务",
    follow_up: "需跟进",
    no_visits: "没有符合条件的走访记录。",
    next_page: "下一页",
    first_page: "第一页",
    fixed_on_spot: "已当场整改",
    not_fixed: "未整改",
    profile: "基本信息",
    address: "地址",
    phone: "电话",
    birth_year: "出生年份",
    living_situation: "居住情况",
    emergency_contact: "紧急联系人",
    needs: "需求",
    risk_level: "风险等级",
    visit_every_days: "走访间隔（天）",
    last_visit: "最近走访",
    live_visits: "走访次数",
    open_follow_ups: "未完成跟进",
    timeline: "走访时间线",
    follow_ups: "跟进事项",
    deadline: "期限",
    status: "状态",
    deleted: "已删除",
    notes: "记录",
    remarks: "备注",
    blood_pressure: "血压",
    reviewed_by: "审核人",
    comment: "意见",
    approve: "通过",
    needs_attention: "需关注",
    review_sent: "审核意见已保存，志愿者下次同步时会在手机上看到。",
    not_yet: "尚无",
    name_field: "姓名",
    conflicts: "待处理冲突",
    no_conflicts: "没有冲突。",
    conflicts_help: "以下字段在不同设备上被同时修改，请选择保留的值。",
    use_value: "采用此值",
    empty_value: "（空）",
    resolved: "已采用所选的值，各设备下次同步时更新。",
    history: "修改历史",
    history_latest: "仅显示最近 100 条修改。",
    who: "修改人",
    device: "设备",
    web_device: "网页",
    server_device: "服务器",
    what: "内容",
    case_file: "档案",
    visit_word: "走访",
    follow_up_word: "跟进",
    nav_follow_ups: "跟进事项",
    nav_due: "待走访",
    follow_ups_title: "跟进事项",
    overdue: "已逾期",
    owner: "负责人",
    opened: "创建时间",
    comments: "留言",
    no_follow_ups: "没有符合条件的跟进事项。",
    due_title: "待走访老人",
    due_help: "设了走访间隔、今天到期、已逾期或从未走访的服务对象，按上海时间的整天计算，与志愿者手机上的待走访名单一致。",
    never_visited: "从未走访",
    days_overdue: "逾期天数",
    due_today: "今日到期",
    due_status: "状态",
    no_due: "所有服务对象都已按时走访。",
    previous_page: "上一页",
    error_title: "出错了",
    error_bad_request: "请求有误。",
    error_forbidden: "您没有权限执行此操作。",
    error_not_found: "找不到该页面，或不在您的负责范围内。",
    error_conflict: "数据已被他人修改，请刷新后重试。",
    error_rate_limited: "请求过于频繁，请稍后再试。",
    error_unavailable: "服务器暂时无法访问数据库，数据没有丢失，请稍后重试。",
    error_internal: "服务器出错，数据没有丢失，请稍后重试。",
    back_to_log: "返回走访记录",
};

pub(crate) const EN: Msgs = Msgs {
    lang: Lang::En,
    app_name: "Linli",
    switch_to: "中文",
    nav_visits: "Visit log",
    signed_in_as: "Signed in as",
    logout: "Sign out",
    login_title: "Sign in",
    login_name: "Login",
    password: "Password",
    login_button: "Sign in",
    login_failed: "Wrong login or password.",
    login_volunteer: "Volunteers record visits in the phone app; these pages are for station staff and coordinators.",
    login_expired_form: "The sign-in form had expired; please enter your details again.",
    login_rate_limited: "Too many attempts; please wait a minute and try again.",
    visits_title: "Visit log",
    filter: "Filter",
    clear_filters: "Clear filters",
    from: "From",
    to: "To",
    any: "Any",
    station: "Station",
    alliance: "Alliance",
    unit: "Unit",
    project: "Project",
    volunteer: "Volunteer",
    service: "Service",
    hazards: "Hazards",
    hazards_yes: "Hazards found",
    hazards_no: "No hazards",
    review: "Review",
    when: "When",
    resident: "Resident",
    minutes: "min",
    wellbeing: "Condition",
    services: "Services",
    follow_up: "Follow-up",
    no_visits: "No visits match.",
    next_page: "Next page",
    first_page: "First page",
    fixed_on_spot: "fixed on the spot",
    not_fixed: "not fixed",
    profile: "Profile",
    address: "Address",
    phone: "Phone",
    birth_year: "Year of birth",
    living_situation: "Living situation",
    emergency_contact: "Emergency contact",
    needs: "Needs",
    risk_level: "Risk level",
    visit_every_days: "Visit every (days)",
    last_visit: "Last visit",
    live_visits: "Visits",
    open_follow_ups: "Open follow-ups",
    timeline: "Visits",
    follow_ups: "Follow-ups",
    deadline: "Deadline",
    status: "Status",
    deleted: "deleted",
    notes: "Notes",
    remarks: "Remarks",
    blood_pressure: "Blood pressure",
    reviewed_by: "Reviewed by",
    comment: "Comment",
    approve: "Approve",
    needs_attention: "Needs attention",
    review_sent: "Review saved; the volunteer sees it on their phone at the next sync.",
    not_yet: "none yet",
    name_field: "Name",
    conflicts: "Conflicts",
    no_conflicts: "No conflicting values.",
    conflicts_help: "These fields were changed on several devices at once; choose the value to keep.",
    use_value: "Use this value",
    empty_value: "(empty)",
    resolved: "The chosen value is kept; devices update at their next sync.",
    history: "Edit history",
    history_latest: "Showing the latest 100 changes.",
    who: "By",
    device: "Device",
    web_device: "web",
    server_device: "server",
    what: "What",
    case_file: "case file",
    visit_word: "visit",
    follow_up_word: "follow-up",
    nav_follow_ups: "Follow-ups",
    nav_due: "Visits due",
    follow_ups_title: "Follow-ups",
    overdue: "Overdue",
    owner: "Owner",
    opened: "Opened",
    comments: "Comments",
    no_follow_ups: "No follow-ups match.",
    due_title: "Visits due",
    due_help: "Residents with a visit interval who are due today, overdue or never visited, counted in whole days of Shanghai time: the same list the volunteers' phones show.",
    never_visited: "never visited",
    days_overdue: "Days overdue",
    due_today: "due today",
    due_status: "Status",
    no_due: "Every resident has been visited on time.",
    previous_page: "Previous page",
    error_title: "Something went wrong",
    error_bad_request: "The request was not valid.",
    error_forbidden: "You may not do this.",
    error_not_found: "Not found, or not in your scope.",
    error_conflict: "Someone else changed this; reload and try again.",
    error_rate_limited: "Too many requests; please wait and try again.",
    error_unavailable: "The server cannot reach its database; nothing was lost, try again later.",
    error_internal: "The server failed; nothing was lost, try again later.",
    back_to_log: "Back to the visit log",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_redirects_are_refused() {
        assert_eq!(local_path("/web/visits?station=x"), "/web/visits?station=x");
        for evil in [
            "https://evil.example/",
            "//evil.example/web/",
            "/web/..//evil",
            "/\\evil",
            "/web/\\evil",
            "/api/v1/me",
            "",
        ] {
            assert_eq!(local_path(evil), "/web/visits", "{evil}");
        }
    }

    #[test]
    fn labels_follow_the_language() {
        assert_eq!(ZH.review_status("approved"), "已通过");
        assert_eq!(EN.review_status("needs_attention"), "Needs attention");
        assert_eq!(EN.review_status("pending"), "Pending");
        assert_eq!(ZH.living("alone"), "独居");
        assert_eq!(EN.risk(""), "");
    }
}

// ---- Statistics and exports (`stats.rs`, `export.rs`) ----------------------------
// Their own struct, so the strings of the visit log and those of the statistics can
// grow without touching each other.

/// Every string the statistics page and the exports show.
#[derive(Debug)]
pub(crate) struct StatsMsgs {
    pub nav_stats: &'static str,
    pub stats_title: &'static str,
    pub by: &'static str,
    pub by_alliance: &'static str,
    pub by_unit: &'static str,
    pub by_project: &'static str,
    pub by_station: &'static str,
    pub by_month: &'static str,
    pub visits: &'static str,
    pub services: &'static str,
    pub residents: &'static str,
    pub participations: &'static str,
    pub volunteers: &'static str,
    pub hours: &'static str,
    pub hazards_found: &'static str,
    pub hazards_fixed: &'static str,
    pub total: &'static str,
    pub no_alliance: &'static str,
    pub no_unit: &'static str,
    pub period_all: &'static str,
    pub chart_caption: &'static str,
    pub definitions: &'static str,
    pub no_figures: &'static str,
    pub too_many_months: &'static str,
    pub export_csv: &'static str,
    pub export_xlsx: &'static str,
    pub export_too_large: &'static str,
    // Export columns.
    pub col_date: &'static str,
    pub col_duration: &'static str,
    pub col_visit_id: &'static str,
}

impl Lang {
    /// The statistics' and exports' strings.
    pub fn stats(self) -> &'static StatsMsgs {
        match self {
            Lang::Zh => &STATS_ZH,
            Lang::En => &STATS_EN,
        }
    }
}

pub(crate) const STATS_ZH: StatsMsgs = StatsMsgs {
    nav_stats: "统计",
    stats_title: "统计",
    by: "分组",
    by_alliance: "按联盟",
    by_unit: "按单位",
    by_project: "按项目",
    by_station: "按服务站",
    by_month: "按月份",
    visits: "服务人次",
    services: "服务项次",
    residents: "服务对象人数",
    participations: "志愿者参与人次",
    volunteers: "志愿者人数",
    hours: "志愿服务时长（小时）",
    hazards_found: "发现隐患",
    hazards_fixed: "当场整改",
    total: "合计",
    no_alliance: "无联盟",
    no_unit: "无单位",
    period_all: "全部时间",
    chart_caption: "各组服务人次",
    definitions: "服务人次：未删除的走访记录数；服务项次：这些走访记录的服务内容条数；服务对象人数：不重复的服务对象；志愿者参与人次：同一志愿者同一天（上海时间）计一次；时长按每次走访的分钟数（取整）相加。服务对象、志愿者和参与人次在各组内去重，各组相加可能大于合计。点击任一数字可查看对应的走访记录。",
    no_figures: "该期间没有符合条件的走访记录。",
    too_many_months: "按月份统计时，期间不能超过 240 个月，请设置开始和结束日期。",
    export_csv: "导出 CSV",
    export_xlsx: "导出 Excel",
    export_too_large: "符合条件的走访记录超过 100,000 条，请缩小筛选范围（例如缩短期间）后再导出。",
    col_date: "日期时间",
    col_duration: "时长（分钟）",
    col_visit_id: "走访编号",
};

pub(crate) const STATS_EN: StatsMsgs = StatsMsgs {
    nav_stats: "Statistics",
    stats_title: "Statistics",
    by: "Group by",
    by_alliance: "Alliance",
    by_unit: "Unit",
    by_project: "Project",
    by_station: "Station",
    by_month: "Month",
    visits: "Beneficiary-visits",
    services: "Services delivered",
    residents: "Residents served",
    participations: "Volunteer participations",
    volunteers: "Volunteers",
    hours: "Volunteer hours",
    hazards_found: "Hazards found",
    hazards_fixed: "Fixed on the spot",
    total: "Total",
    no_alliance: "No alliance",
    no_unit: "No unit",
    period_all: "All time",
    chart_caption: "Beneficiary-visits per group",
    definitions: "Beneficiary-visits: visit records not deleted. Services delivered: the service entries of those visits. Residents served: distinct residents. Volunteer participations: one per volunteer per day (Shanghai time) with a visit. Hours: the visits' whole minutes added up. Residents, volunteers and participations are distinct within each group, so the groups can add up to more than the total. Every figure links to the visits behind it.",
    no_figures: "No visits match in this period.",
    too_many_months: "Monthly figures cover at most 240 months: please set a start and an end date.",
    export_csv: "Export CSV",
    export_xlsx: "Export Excel",
    export_too_large: "More than 100,000 visits match: please narrow the filters (a shorter period, say) and export again.",
    col_date: "Date and time",
    col_duration: "Duration (minutes)",
    col_visit_id: "Visit id",
};

// ---- Roster import (`roster.rs`) ------------------------------------------------

/// The roster import's strings. `{…}` marks are replaced by the page.
#[derive(Debug)]
pub(crate) struct RosterMsgs {
    pub nav_import: &'static str,
    pub title: &'static str,
    pub intro: &'static str,
    pub file: &'static str,
    pub upload: &'static str,
    pub preview_title: &'static str,
    pub row: &'static str,
    pub column: &'static str,
    pub problem: &'static str,
    pub errors: &'static str,
    pub warnings: &'static str,
    pub rows_ready: &'static str,
    pub nothing_imported: &'static str,
    pub confirm: &'static str,
    pub again: &'static str,
    pub created_title: &'static str,
    pub created: &'static str,
    pub failed_after: &'static str,
    pub whole_file: &'static str,
    // Problems with the file.
    pub no_station: &'static str,
    pub no_file: &'static str,
    pub too_big: &'static str,
    pub unknown_format: &'static str,
    pub unreadable: &'static str,
    pub no_header: &'static str,
    pub no_name_column: &'static str,
    pub column_twice: &'static str,
    pub unknown_column: &'static str,
    pub no_rows: &'static str,
    pub too_many_rows: &'static str,
    // Problems with a cell.
    pub name_required: &'static str,
    pub not_a_whole_number: &'static str,
    pub bad_birth_year: &'static str,
    pub bad_frequency: &'static str,
    pub unknown_code: &'static str,
    pub rejected: &'static str,
    pub duplicate_in_file: &'static str,
    pub duplicate_existing: &'static str,
    /// A confirm whose residents were created meanwhile (a second click, another tab).
    pub already_imported: &'static str,
}

impl Lang {
    /// The roster import's catalog.
    pub fn roster(self) -> &'static RosterMsgs {
        match self {
            Lang::Zh => &ROSTER_ZH,
            Lang::En => &ROSTER_EN,
        }
    }
}

pub(crate) const ROSTER_ZH: RosterMsgs = RosterMsgs {
    nav_import: "导入名册",
    title: "导入居民名册",
    intro: "上传 Excel（.xlsx，读第一个工作表）或 CSV（UTF-8 或 GBK）文件。第一行为表头，列的顺序不限：姓名（必填）、地址、电话、出生年份、居住情况、紧急联系人、需求、风险等级、走访频率（天）。先预览，整个文件无误并确认后才导入。",
    file: "文件",
    upload: "上传并预览",
    preview_title: "名册预览",
    row: "行",
    column: "列",
    problem: "问题",
    errors: "错误",
    warnings: "提示",
    rows_ready: "{n} 位居民可以导入到 {station}。",
    nothing_imported: "文件有错误，未导入任何居民。请修改文件后重新上传。",
    confirm: "确认导入",
    again: "重新上传",
    created_title: "导入完成",
    created: "已在 {station} 建立 {n} 位居民的档案，将同步到手机。",
    failed_after: "导入中途失败：以下居民已建立，其余未建立。",
    whole_file: "整个文件",
    no_station: "请选择您负责范围内的服务站。",
    no_file: "请选择要上传的文件。",
    too_big: "文件太大：上限为 {max}。",
    unknown_format: "只支持 .xlsx 和 .csv 文件。",
    unreadable: "无法读取文件：{why}",
    no_header: "文件是空的：没有表头行。",
    no_name_column: "表头中没有“姓名”列。",
    column_twice: "“{column}”列出现了两次。",
    unknown_column: "不认识的列“{column}”，将被忽略。",
    no_rows: "表头下面没有居民。",
    too_many_rows: "一次最多导入 {max} 行。",
    name_required: "姓名必填。",
    not_a_whole_number: "“{value}”不是整数。",
    bad_birth_year: "出生年份 {value} 不合理。",
    bad_frequency: "走访频率 {value} 天超出范围（1 至 366 天）。",
    unknown_code: "“{value}”无效，可填：{choices}。",
    rejected: "不符合规则：{why}",
    duplicate_in_file: "与第 {row} 行重复（姓名和地址相同）。",
    duplicate_existing: "该服务站已有同名同地址的居民。",
    already_imported: "这份名册已经导入过（可能点了两次确认），没有重复建立档案。",
};

pub(crate) const ROSTER_EN: RosterMsgs = RosterMsgs {
    nav_import: "Import roster",
    title: "Import a resident roster",
    intro: "Upload an Excel file (.xlsx, its first sheet is read) or a CSV file (UTF-8 or GBK). The first row is the header, columns in any order: name (required), address, phone, birth year, living situation, emergency contact, needs, risk level, visit every (days). You see a preview first; nothing is imported until the whole file is valid and you confirm.",
    file: "File",
    upload: "Upload and preview",
    preview_title: "Roster preview",
    row: "Row",
    column: "Column",
    problem: "Problem",
    errors: "Errors",
    warnings: "Warnings",
    rows_ready: "{n} residents are ready to import into {station}.",
    nothing_imported: "The file has errors: no resident was imported. Correct the file and upload it again.",
    confirm: "Confirm import",
    again: "Upload again",
    created_title: "Import done",
    created: "Case files for {n} residents were created in {station}; they sync to the phones.",
    failed_after: "The import failed part-way: the residents below were created, the others were not.",
    whole_file: "whole file",
    no_station: "Choose a station within your scope.",
    no_file: "Choose a file to upload.",
    too_big: "The file is too large: at most {max}.",
    unknown_format: "Only .xlsx and .csv files can be imported.",
    unreadable: "The file cannot be read: {why}",
    no_header: "The file is empty: it has no header row.",
    no_name_column: "The header has no name column.",
    column_twice: "The column \"{column}\" appears twice.",
    unknown_column: "Unknown column \"{column}\": it is ignored.",
    no_rows: "There are no residents below the header.",
    too_many_rows: "At most {max} rows can be imported at once.",
    name_required: "The name is required.",
    not_a_whole_number: "\"{value}\" is not a whole number.",
    bad_birth_year: "Birth year {value} is implausible.",
    bad_frequency: "{value} days between visits is out of range (1 to 366).",
    unknown_code: "\"{value}\" is not valid; use one of: {choices}.",
    rejected: "Refused by the rules: {why}",
    duplicate_in_file: "Repeats row {row} (same name and address).",
    duplicate_existing: "The station already has a resident with this name and address.",
    already_imported: "This roster was already imported (confirm may have been pressed twice); no case file was made twice.",
};

// ---- Follow-up tickets (`follow_ups.rs`) -------------------------------------------

/// The follow-up forms' and ticket page's strings.
#[derive(Debug)]
pub(crate) struct FollowUpMsgs {
    pub open_title: &'static str,
    pub open_from_visit: &'static str,
    pub title: &'static str,
    pub unassigned: &'static str,
    pub open_button: &'static str,
    pub ticket: &'static str,
    pub opened_by: &'static str,
    pub from_visit: &'static str,
    pub closed_by: &'static str,
    pub resolution: &'static str,
    pub no_comments: &'static str,
    pub add_comment: &'static str,
    pub comment_button: &'static str,
    pub assign_title: &'static str,
    pub assign_button: &'static str,
    pub close_title: &'static str,
    pub close_button: &'static str,
    pub back_to_resident: &'static str,
    /// `{date}`: the visit's day.
    pub fallback_title: &'static str,
    pub notice_opened: &'static str,
    pub notice_commented: &'static str,
    pub notice_assigned: &'static str,
    pub notice_closed: &'static str,
}

impl Lang {
    /// The follow-ups' catalog.
    pub fn follow_ups(self) -> &'static FollowUpMsgs {
        match self {
            Lang::Zh => &FOLLOW_UPS_ZH,
            Lang::En => &FOLLOW_UPS_EN,
        }
    }
}

pub(crate) const FOLLOW_UPS_ZH: FollowUpMsgs = FollowUpMsgs {
    open_title: "新建跟进事项",
    open_from_visit: "根据本次走访新建跟进事项",
    title: "事项",
    unassigned: "未指派",
    open_button: "新建",
    ticket: "跟进事项",
    opened_by: "创建人",
    from_visit: "来源走访",
    closed_by: "关闭人",
    resolution: "处理结果",
    no_comments: "还没有留言。",
    add_comment: "添加留言",
    comment_button: "留言",
    assign_title: "负责人和期限",
    assign_button: "保存",
    close_title: "关闭事项",
    close_button: "关闭事项",
    back_to_resident: "返回服务对象页面",
    fallback_title: "{date} 走访的跟进",
    notice_opened: "跟进事项已创建；负责人和志愿者下次同步时会在手机上看到。",
    notice_commented: "留言已保存；下次同步时会到达手机。",
    notice_assigned: "负责人和期限已保存；下次同步时会到达手机。",
    notice_closed: "跟进事项已关闭；下次同步时会到达手机。",
};

pub(crate) const FOLLOW_UPS_EN: FollowUpMsgs = FollowUpMsgs {
    open_title: "Open a follow-up",
    open_from_visit: "Open a follow-up from this visit",
    title: "Title",
    unassigned: "Unassigned",
    open_button: "Open",
    ticket: "Follow-up",
    opened_by: "Opened by",
    from_visit: "From the visit",
    closed_by: "Closed by",
    resolution: "Resolution",
    no_comments: "No comments yet.",
    add_comment: "Add a comment",
    comment_button: "Comment",
    assign_title: "Owner and deadline",
    assign_button: "Save",
    close_title: "Close the follow-up",
    close_button: "Close the follow-up",
    back_to_resident: "Back to the resident",
    fallback_title: "Follow-up on the visit of {date}",
    notice_opened: "Follow-up opened; the owner and the volunteer see it on their phones at the next sync.",
    notice_commented: "Comment saved; it reaches the phones at the next sync.",
    notice_assigned: "Owner and deadline saved; they reach the phones at the next sync.",
    notice_closed: "Follow-up closed; the phones see it at the next sync.",
};

// ---- Administration (`admin.rs`) ------------------------------------------------

/// The administration pages' strings. `{…}` marks are replaced by the page.
#[derive(Debug)]
pub(crate) struct AdminMsgs {
    pub nav_admin: &'static str,
    pub catalog_title: &'static str,
    pub catalog_help: &'static str,
    pub users_title: &'static str,
    pub stations: &'static str,
    pub stations_help: &'static str,
    pub alliances: &'static str,
    pub units: &'static str,
    pub projects: &'static str,
    pub service_types: &'static str,
    pub hazard_types: &'static str,
    pub name_zh: &'static str,
    pub name_en: &'static str,
    pub alliance: &'static str,
    pub no_alliance: &'static str,
    pub add: &'static str,
    pub rename: &'static str,
    pub archive: &'static str,
    pub restore: &'static str,
    pub archived: &'static str,
    pub in_use: &'static str,
    pub nothing_yet: &'static str,
    pub saved: &'static str,
    pub login: &'static str,
    pub display_name: &'static str,
    pub role: &'static str,
    pub role_volunteer: &'static str,
    pub role_station_staff: &'static str,
    pub role_coordinator: &'static str,
    pub role_admin: &'static str,
    pub station_list: &'static str,
    pub password: &'static str,
    pub create_user: &'static str,
    pub user_created: &'static str,
    pub disabled: &'static str,
    pub open: &'static str,
    pub devices: &'static str,
    pub device_name: &'static str,
    pub enrolled: &'static str,
    pub last_seen: &'static str,
    pub never: &'static str,
    pub clock: &'static str,
    pub clock_ahead: &'static str,
    pub clock_behind: &'static str,
    pub clock_ok: &'static str,
    pub span_days: &'static str,
    pub span_hours: &'static str,
    pub span_minutes: &'static str,
    pub state: &'static str,
    pub revoked: &'static str,
    pub active: &'static str,
    pub revoke: &'static str,
    pub device_revoked: &'static str,
    pub no_devices: &'static str,
    pub enrolment: &'static str,
    pub enrolment_help: &'static str,
    pub issue_code: &'static str,
    pub hub_enrolment_help: &'static str,
    pub hub_station: &'static str,
    pub issue_hub_code: &'static str,
    pub code_at_hub: &'static str,
    pub code_title: &'static str,
    pub code_help: &'static str,
    pub valid_until: &'static str,
    pub back_to_user: &'static str,
    pub districts_title: &'static str,
    pub districts_help: &'static str,
    pub district_name: &'static str,
    pub create_district: &'static str,
    pub district_created: &'static str,
    pub create_coordinator: &'static str,
    pub coordinator_password: &'static str,
    pub coordinator_created: &'static str,
    pub hubs_title: &'static str,
    pub hubs_help: &'static str,
    pub hub_name: &'static str,
    pub hub_enrolled: &'static str,
    pub hub_last_seen: &'static str,
    pub hub_never: &'static str,
    pub hub_waiting: &'static str,
    pub hub_waiting_since: &'static str,
    pub hub_revoke: &'static str,
    pub hub_is_revoked: &'static str,
    pub hub_revoked: &'static str,
    pub hub_new: &'static str,
    pub hub_code_title: &'static str,
    pub hub_code_help: &'static str,
    pub back_to_hubs: &'static str,
}

impl Lang {
    /// The administration pages' catalog.
    pub fn admin(self) -> &'static AdminMsgs {
        match self {
            Lang::Zh => &ADMIN_ZH,
            Lang::En => &ADMIN_EN,
        }
    }
}

pub(crate) const ADMIN_ZH: AdminMsgs = AdminMsgs {
    nav_admin: "管理",
    catalog_title: "目录",
    catalog_help: "目录在下次同步时发送到手机。条目不会被删除：停用的条目不再出现在菜单中，旧的走访记录仍显示其名称。",
    users_title: "用户",
    stations: "服务站",
    stations_help: "服务站一经建立即可在名册导入和用户中选用。服务站可以改名，但不能停用。",
    alliances: "联盟",
    units: "单位",
    projects: "项目",
    service_types: "服务类型",
    hazard_types: "隐患类型",
    name_zh: "中文名称",
    name_en: "英文名称",
    alliance: "所属联盟",
    no_alliance: "（无联盟）",
    add: "添加",
    rename: "改名",
    archive: "停用",
    restore: "恢复",
    archived: "已停用",
    in_use: "使用中",
    nothing_yet: "暂无。",
    saved: "已保存。",
    login: "登录名",
    display_name: "姓名",
    role: "角色",
    role_volunteer: "志愿者",
    role_station_staff: "服务站工作人员",
    role_coordinator: "协调员",
    role_admin: "管理员",
    station_list: "负责的服务站（仅服务站工作人员）",
    password: "网页登录密码（至少 10 个字符；志愿者留空，用登记码登记手机）",
    create_user: "创建用户",
    user_created: "已创建用户。",
    disabled: "已停用",
    open: "查看",
    devices: "设备",
    device_name: "设备名称",
    enrolled: "登记时间",
    last_seen: "最近同步",
    never: "从未",
    clock: "手机时钟",
    clock_ahead: "快了 {span}：走访时间按手机时钟记录，请核对",
    clock_behind: "慢了 {span}：走访时间按手机时钟记录，请核对",
    clock_ok: "准确",
    span_days: "{n} 天",
    span_hours: "{n} 小时",
    span_minutes: "{n} 分钟",
    state: "状态",
    revoked: "已吊销",
    active: "使用中",
    revoke: "吊销",
    device_revoked: "设备已吊销：它的登录凭证立即失效，下次连接时会清除手机上的数据。",
    no_devices: "还没有登记设备。",
    enrolment: "登记手机",
    enrolment_help: "生成一次性登记码，在手机应用中扫描二维码或输入登记码即可登记该用户的手机。",
    issue_code: "生成登记码",
    hub_enrolment_help: "服务站网络不通时，也可在站点中继上登记：此登记码七天内有效，可在区服务器或所选服务站的中继上使用一次。请在网络通畅时生成，以便中继提前收到。",
    hub_station: "服务站",
    issue_hub_code: "生成中继登记码",
    code_at_hub: "此登记码也可在以下服务站的中继上使用：",
    code_title: "登记码",
    code_help: "请在有效期内用手机应用扫描下面的二维码，或输入登记码。登记码只能使用一次，此页面关闭后不再显示。",
    valid_until: "有效期至",
    back_to_user: "返回用户页面",
    districts_title: "街镇",
    districts_help: "先建立街镇，再为它创建第一位协调员。协调员用这里设定的登录名和密码登录网页，在“管理”中建立本街镇的服务站、目录和用户。",
    district_name: "街镇名称",
    create_district: "建立街镇",
    district_created: "已建立街镇。请为它创建第一位协调员。",
    create_coordinator: "创建协调员",
    coordinator_password: "网页登录密码（至少 10 个字符）",
    coordinator_created: "已创建协调员：现在可以用该登录名和密码登录网页。",
    hubs_title: "站点中继",
    hubs_help: "站点中继是放在服务站的一台小电脑：外网不通时，站内手机照常与它同步，它在外网恢复后把记录转交区服务器，区服务器逐条重新核查。",
    hub_name: "名称",
    hub_enrolled: "登记时间",
    hub_last_seen: "最近联系",
    hub_never: "尚未联系",
    hub_waiting: "在站点待转交",
    hub_waiting_since: "最早",
    hub_revoke: "停用",
    hub_is_revoked: "已停用",
    hub_revoked: "已停用该中继：它的下一次联系将被拒绝。",
    hub_new: "为服务站登记新中继",
    hub_code_title: "中继登记码",
    hub_code_help: "在服务站的中继电脑上运行下面两条命令（登记码只能使用一次，此页面关闭后不再显示）。之后站内手机在应用中选择该中继的地址即可同步。",
    back_to_hubs: "返回站点中继",
};

pub(crate) const ADMIN_EN: AdminMsgs = AdminMsgs {
    nav_admin: "Administration",
    catalog_title: "Catalog",
    catalog_help: "The catalog reaches the phones at their next sync. Entries are never deleted: archived ones leave the menus, and old visits still show their names.",
    users_title: "Users",
    stations: "Stations",
    stations_help: "A new station can be chosen at once for roster imports and staff. Stations can be renamed, not archived.",
    alliances: "Alliances",
    units: "Units",
    projects: "Projects",
    service_types: "Service types",
    hazard_types: "Hazard types",
    name_zh: "Name (Chinese)",
    name_en: "Name (English)",
    alliance: "Alliance",
    no_alliance: "(no alliance)",
    add: "Add",
    rename: "Rename",
    archive: "Archive",
    restore: "Restore",
    archived: "Archived",
    in_use: "In use",
    nothing_yet: "None yet.",
    saved: "Saved.",
    login: "Login",
    display_name: "Name",
    role: "Role",
    role_volunteer: "Volunteer",
    role_station_staff: "Station staff",
    role_coordinator: "Coordinator",
    role_admin: "Administrator",
    station_list: "Stations covered (station staff only)",
    password: "Web password (at least 10 characters; leave empty for volunteers, who enrol a phone with a code)",
    create_user: "Create user",
    user_created: "User created.",
    disabled: "Disabled",
    open: "Open",
    devices: "Devices",
    device_name: "Device name",
    enrolled: "Enrolled",
    last_seen: "Last seen",
    never: "Never",
    clock: "Phone clock",
    clock_ahead: "{span} fast: visit times are by the phone's clock, check them",
    clock_behind: "{span} slow: visit times are by the phone's clock, check them",
    clock_ok: "Right",
    span_days: "{n} day(s)",
    span_hours: "{n} hour(s)",
    span_minutes: "{n} minute(s)",
    state: "State",
    revoked: "Revoked",
    active: "Active",
    revoke: "Revoke",
    device_revoked: "Device revoked: its credentials stop working now, and it erases its data when it next connects.",
    no_devices: "No devices enrolled yet.",
    enrolment: "Enrol a phone",
    enrolment_help: "Issue a one-time enrolment code; scanning its QR code (or typing the code) in the phone app enrols this user's phone.",
    issue_code: "Issue an enrolment code",
    hub_enrolment_help: "For enrolling at a station's hub while its uplink is down: this code lasts seven days and works once, at the district server or at the chosen station's hub. Issue it while the uplink works, so the hub receives it beforehand.",
    hub_station: "Station",
    issue_hub_code: "Issue a code for the station hub",
    code_at_hub: "This code also works at the hub of the station",
    code_title: "Enrolment code",
    code_help: "Scan the QR code below with the phone app, or type the code, before it expires. The code works once and is not shown again once this page is closed.",
    valid_until: "Valid until",
    back_to_user: "Back to the user",
    districts_title: "Districts",
    districts_help: "Create a district, then its first coordinator. The coordinator signs in on the web with the login and password set here and, under Administration, sets up the district's stations, catalog and users.",
    district_name: "District name",
    create_district: "Create district",
    district_created: "District created. Now create its first coordinator.",
    create_coordinator: "Create coordinator",
    coordinator_password: "Web password (at least 10 characters)",
    coordinator_created: "Coordinator created: they can sign in on the web with this login and password now.",
    hubs_title: "Station hubs",
    hubs_help: "A station hub is a small machine at a station: when the uplink is down the station's phones sync with it as usual, and it hands their records on to the district server once the uplink returns, where each is checked again.",
    hub_name: "Name",
    hub_enrolled: "Enrolled",
    hub_last_seen: "Last contact",
    hub_never: "Not yet",
    hub_waiting: "Waiting at the station",
    hub_waiting_since: "oldest",
    hub_revoke: "Revoke",
    hub_is_revoked: "Revoked",
    hub_revoked: "Hub revoked: its next call will be refused.",
    hub_new: "Enrol a new hub for a station",
    hub_code_title: "Hub code",
    hub_code_help: "Run these two commands on the station's hub machine (the code works once and is not shown again once this page is closed). The station's phones then sync with the hub at its address.",
    back_to_hubs: "Back to station hubs",
};

impl AdminMsgs {
    /// How far a phone's clock was off, flagged when it is past
    /// [`crate::identity::CLOCK_SKEW_FLAG_MS`]: `(text, flagged)`.
    pub fn clock_skew(&self, skew_ms: i64) -> (String, bool) {
        const MINUTE: i64 = 60_000;
        const HOUR: i64 = 60 * MINUTE;
        const DAY: i64 = 24 * HOUR;
        let off = skew_ms.unsigned_abs();
        if off < crate::identity::CLOCK_SKEW_FLAG_MS.unsigned_abs() {
            return (self.clock_ok.to_owned(), false);
        }
        let (unit, text) = if off >= DAY.unsigned_abs() - HOUR.unsigned_abs() {
            (DAY, self.span_days)
        } else if off >= HOUR.unsigned_abs() - MINUTE.unsigned_abs() {
            (HOUR, self.span_hours)
        } else {
            (MINUTE, self.span_minutes)
        };
        // To the nearest unit: a request's own latency must not turn two days into one.
        let unit = unit.unsigned_abs();
        let span = text.replace("{n}", &((off + unit / 2) / unit).to_string());
        let line = if skew_ms > 0 {
            self.clock_ahead
        } else {
            self.clock_behind
        };
        (line.replace("{span}", &span), true)
    }

    /// A role's name.
    pub fn role_name(&self, role: sync_core::model::Role) -> &'static str {
        use sync_core::model::Role;
        match role {
            Role::Volunteer => self.role_volunteer,
            Role::StationStaff => self.role_station_staff,
            Role::Coordinator => self.role_coordinator,
            Role::Admin => self.role_admin,
        }
    }
}

// ---- Refused changes (`quarantine.rs`) ---------------------------------------------

/// The refused-changes pages' strings (issue 12). `{…}` marks are replaced by the page.
#[derive(Debug)]
pub(crate) struct QuarantineMsgs {
    pub nav: &'static str,
    pub title: &'static str,
    pub help: &'static str,
    pub waiting: &'static str,
    pub decided: &'static str,
    pub none_waiting: &'static str,
    pub none_decided: &'static str,
    pub number: &'static str,
    pub received: &'static str,
    pub who: &'static str,
    pub device: &'static str,
    pub resident: &'static str,
    pub what: &'static str,
    pub why: &'static str,
    pub decision: &'static str,
    pub accepted: &'static str,
    pub dismissed: &'static str,
    pub visits_n: &'static str,
    pub profile_fields: &'static str,
    pub follow_ups_n: &'static str,
    pub other_n: &'static str,
    pub unreadable: &'static str,
    pub new_resident: &'static str,
    pub accept_title: &'static str,
    pub accept_help: &'static str,
    pub accept_button: &'static str,
    pub cannot_accept: &'static str,
    pub dismiss_title: &'static str,
    pub dismiss_help: &'static str,
    pub note: &'static str,
    pub dismiss_button: &'static str,
    pub notice_accepted: &'static str,
    pub notice_dismissed: &'static str,
    pub refused_again: &'static str,
    pub back: &'static str,
    pub visit_line: &'static str,
}

impl Lang {
    /// The refused-changes pages' catalog.
    pub fn quarantine(self) -> &'static QuarantineMsgs {
        match self {
            Lang::Zh => &QUARANTINE_ZH,
            Lang::En => &QUARANTINE_EN,
        }
    }
}

pub(crate) const QUARANTINE_ZH: QuarantineMsgs = QuarantineMsgs {
    nav: "被退回的记录",
    title: "被退回的记录",
    help: "手机上传后被规则退回的修改。它们仍保留在手机上，直到有人作出决定：接受后记入档案（规则仍然适用），或说明理由驳回，理由会在下次同步时送到志愿者的手机上。",
    waiting: "待处理",
    decided: "已处理",
    none_waiting: "没有待处理的退回记录。",
    none_decided: "还没有处理过的退回记录。",
    number: "编号",
    received: "收到时间",
    who: "提交人",
    device: "设备",
    resident: "老人",
    what: "内容",
    why: "退回原因",
    decision: "处理结果",
    accepted: "已接受",
    dismissed: "已驳回",
    visits_n: "走访 {n} 次",
    profile_fields: "档案字段：{fields}",
    follow_ups_n: "跟进事项 {n} 项",
    other_n: "其他修改 {n} 处",
    unreadable: "无法解读（数据损坏或缺少其依赖的修改）",
    new_resident: "（新建档案）",
    accept_title: "接受",
    accept_help: "接受后，这些修改以原提交人和原设备的名义记入档案，并在下次同步时到达各手机。除了范围和时间由您认可外，其他规则仍然适用。",
    accept_button: "接受并记入档案",
    cannot_accept: "这类退回无法接受，只能驳回。",
    dismiss_title: "驳回",
    dismiss_help: "请写明理由，理由会送到志愿者的手机上。",
    note: "理由",
    dismiss_button: "驳回",
    notice_accepted: "已接受：修改已记入档案，手机将在下次同步时收到。",
    notice_dismissed: "已驳回：理由将在下次同步时送到手机上。",
    refused_again: "无法接受：规则仍然拒绝这些修改。",
    back: "返回列表",
    visit_line: "{date} · {volunteer} · {notes}",
};

pub(crate) const QUARANTINE_EN: QuarantineMsgs = QuarantineMsgs {
    nav: "Refused changes",
    title: "Refused changes",
    help: "Changes that phones uploaded and the rules refused. They stay on the phone until a person decides: accept them into the record (the rules still apply), or dismiss them with a reason, which reaches the volunteer's phone at its next sync.",
    waiting: "Waiting",
    decided: "Decided",
    none_waiting: "No refused changes wait for a decision.",
    none_decided: "No refused changes have been decided yet.",
    number: "No.",
    received: "Received",
    who: "From",
    device: "Device",
    resident: "Resident",
    what: "What",
    why: "Why refused",
    decision: "Decision",
    accepted: "Accepted",
    dismissed: "Dismissed",
    visits_n: "{n} visit(s)",
    profile_fields: "profile fields: {fields}",
    follow_ups_n: "{n} follow-up(s)",
    other_n: "{n} other write(s)",
    unreadable: "cannot be read (damaged, or built on changes the server lacks)",
    new_resident: "(a new case file)",
    accept_title: "Accept",
    accept_help: "Accepted changes enter the record under their author and device, and reach the phones at their next sync. You vouch for scope and time; every other rule still applies.",
    accept_button: "Accept into the record",
    cannot_accept: "A refusal of this kind cannot be accepted, only dismissed.",
    dismiss_title: "Dismiss",
    dismiss_help: "Say why: the reason reaches the volunteer's phone.",
    note: "Reason",
    dismiss_button: "Dismiss",
    notice_accepted: "Accepted: the changes are in the record and reach the phones at their next sync.",
    notice_dismissed: "Dismissed: the reason reaches the phone at its next sync.",
    refused_again: "Cannot accept: the rules still refuse these changes.",
    back: "Back to the list",
    visit_line: "{date} · {volunteer} · {notes}",
};

// ---- A resident's care: profile, station, volunteers (`care.rs`) --------------------

/// The resident page's editing forms (issue 12).
#[derive(Debug)]
pub(crate) struct CareMsgs {
    pub volunteers_title: &'static str,
    pub no_volunteers: &'static str,
    pub assign: &'static str,
    pub assign_button: &'static str,
    pub unassign_button: &'static str,
    pub edit_title: &'static str,
    pub edit_help: &'static str,
    pub visit_every_days: &'static str,
    pub not_set: &'static str,
    pub save: &'static str,
    pub move_title: &'static str,
    pub move_help: &'static str,
    pub move_button: &'static str,
    pub notice_assigned: &'static str,
    pub notice_unassigned: &'static str,
    pub notice_saved: &'static str,
    pub notice_unchanged: &'static str,
    pub notice_moved: &'static str,
    pub close_title: &'static str,
    pub close_help: &'static str,
    pub close_reason: &'static str,
    pub close_note: &'static str,
    pub close_button: &'static str,
    pub reopen_help: &'static str,
    pub reopen_button: &'static str,
    /// The banner of a closed case file: `{reason}`, `{by}`, `{date}`.
    pub closed_banner: &'static str,
    pub notice_closed: &'static str,
    pub notice_reopened: &'static str,
    pub erase_title: &'static str,
    pub erase_help: &'static str,
    pub erase_confirm: &'static str,
    pub erase_button: &'static str,
}

impl Lang {
    /// The resident page's editing forms' catalog.
    pub fn care(self) -> &'static CareMsgs {
        match self {
            Lang::Zh => &CARE_ZH,
            Lang::En => &CARE_EN,
        }
    }
}

pub(crate) const CARE_ZH: CareMsgs = CareMsgs {
    volunteers_title: "负责的志愿者",
    no_volunteers: "还没有指派志愿者。",
    assign: "指派志愿者",
    assign_button: "指派",
    unassign_button: "取消指派",
    edit_title: "修改档案",
    edit_help: "保存后，修改在下次同步时到达各手机；只改动的字段会被写入。",
    visit_every_days: "走访间隔（天）",
    not_set: "未设置",
    save: "保存",
    move_title: "转到其他服务站",
    move_help: "原服务站的工作人员在下次同步时不再收到此档案，新服务站的工作人员收到；已指派的志愿者不变。",
    move_button: "转站",
    notice_assigned: "已指派：志愿者的手机在下次同步时收到此档案。",
    notice_unassigned: "已取消指派：志愿者的手机在下次同步时删除此档案（未同步的记录会先上传）。",
    notice_saved: "档案已保存，下次同步时到达各手机。",
    notice_unchanged: "没有改动。",
    notice_moved: "已转站，各手机在下次同步时随之更新。",
    close_title: "结案",
    close_help: "结案后，此档案在下次同步时离开所有手机，不再列入待走访；已记录的内容全部保留，可随时重新开启。手机上尚未同步的记录会先上传。",
    close_reason: "原因",
    close_note: "说明（可选）",
    close_button: "结案",
    reopen_help: "重新开启后，各手机在下次同步时重新收到此档案。",
    reopen_button: "重新开启",
    closed_banner: "此档案已结案（{reason}），{by} 于 {date}。",
    notice_closed: "已结案：此档案在下次同步时离开各手机。",
    notice_reopened: "已重新开启：各手机在下次同步时重新收到此档案。",
    erase_title: "删除个人信息",
    erase_help: "应本人或家属要求，从服务器上删除此服务对象的全部个人信息：档案、随访单、被拒绝的修改，各手机在下次同步时删除。走访次数等统计匿名保留。删除后无法恢复；备份中的副本随备份轮换过期。",
    erase_confirm: "输入服务对象姓名以确认",
    erase_button: "永久删除",
};

pub(crate) const CARE_EN: CareMsgs = CareMsgs {
    volunteers_title: "Volunteers",
    no_volunteers: "No volunteer is assigned yet.",
    assign: "Assign a volunteer",
    assign_button: "Assign",
    unassign_button: "Unassign",
    edit_title: "Edit the profile",
    edit_help: "Saved changes reach the phones at their next sync; only the fields you change are written.",
    visit_every_days: "Visit every (days)",
    not_set: "Not set",
    save: "Save",
    move_title: "Move to another station",
    move_help: "The old station's staff stop receiving this case file at their next sync and the new station's receive it; assigned volunteers keep it.",
    move_button: "Move",
    notice_assigned: "Assigned: the volunteer's phone receives this case file at its next sync.",
    notice_unassigned: "Unassigned: the volunteer's phone removes this case file at its next sync (after uploading anything not yet synced).",
    notice_saved: "Profile saved; it reaches the phones at their next sync.",
    notice_unchanged: "Nothing changed.",
    notice_moved: "Moved; the phones follow at their next sync.",
    close_title: "Close the case file",
    close_help: "A closed case file leaves every phone at its next sync and is no longer due for visits; everything recorded stays, and it can be reopened at any time. Anything a phone has not synced yet is uploaded first.",
    close_reason: "Reason",
    close_note: "Note (optional)",
    close_button: "Close",
    reopen_help: "Reopened, the case file reaches the phones again at their next sync.",
    reopen_button: "Reopen",
    closed_banner: "This case file is closed ({reason}), by {by} on {date}.",
    notice_closed: "Closed: the case file leaves the phones at their next sync.",
    notice_reopened: "Reopened: the phones receive the case file again at their next sync.",
    erase_title: "Erase personal data",
    erase_help: "At the resident's or their family's request, removes all of this resident's personal data from the server: the case file, follow-ups and refused changes; the phones delete it at their next sync. Statistics such as visit counts are kept, anonymised. This cannot be undone; copies in backups expire as the backups rotate.",
    erase_confirm: "Type the resident's name to confirm",
    erase_button: "Erase for good",
};

// ---- The resident list (`lists.rs`, issue 12) ---------------------------------------

/// The resident list's strings.
#[derive(Debug)]
pub(crate) struct ResidentListMsgs {
    pub nav: &'static str,
    pub title: &'static str,
    pub search: &'static str,
    pub search_help: &'static str,
    pub conflicts_only: &'static str,
    pub conflicts: &'static str,
    pub none: &'static str,
    pub conflict_flag: &'static str,
    pub files: &'static str,
    pub files_open: &'static str,
    pub files_closed: &'static str,
    pub files_all: &'static str,
    pub closed_flag: &'static str,
    pub notice_erased: &'static str,
}

impl Lang {
    /// The resident list's catalog.
    pub fn resident_list(self) -> &'static ResidentListMsgs {
        match self {
            Lang::Zh => &RESIDENT_LIST_ZH,
            Lang::En => &RESIDENT_LIST_EN,
        }
    }
}

pub(crate) const RESIDENT_LIST_ZH: ResidentListMsgs = ResidentListMsgs {
    nav: "服务对象",
    title: "服务对象",
    search: "姓名或地址",
    search_help: "输入姓名或地址的一部分",
    conflicts_only: "只看有冲突的档案",
    conflicts: "档案冲突",
    none: "没有符合条件的服务对象。",
    conflict_flag: "档案有冲突",
    files: "档案",
    files_open: "在访",
    files_closed: "已结案",
    files_all: "全部",
    closed_flag: "已结案",
    notice_erased: "个人信息已删除；各手机在下次同步时删除此档案。",
};

pub(crate) const RESIDENT_LIST_EN: ResidentListMsgs = ResidentListMsgs {
    nav: "Residents",
    title: "Residents",
    search: "Name or address",
    search_help: "Part of a name or an address",
    conflicts_only: "Only profiles with conflicts",
    conflicts: "Profile conflicts",
    none: "No resident matches.",
    conflict_flag: "profile conflict",
    files: "Case files",
    files_open: "Open",
    files_closed: "Closed",
    files_all: "All",
    closed_flag: "closed",
    notice_erased: "The personal data was erased; the phones delete the case file at their next sync.",
};

// ---- Accounts (`accounts.rs`, issue 12) ----------------------------------------------

/// Editing and disabling accounts.
#[derive(Debug)]
pub(crate) struct AccountMsgs {
    pub edit_title: &'static str,
    pub save: &'static str,
    pub disable_title: &'static str,
    pub disable_help: &'static str,
    pub disable_button: &'static str,
    pub enable_button: &'static str,
    pub notice_saved: &'static str,
    pub notice_disabled: &'static str,
    pub notice_enabled: &'static str,
    pub bootstrap_title: &'static str,
    pub bootstrap_help: &'static str,
    pub disable_self_button: &'static str,
    pub revoke_help: &'static str,
    pub awaiting: &'static str,
}

impl Lang {
    /// The accounts forms' catalog.
    pub fn accounts(self) -> &'static AccountMsgs {
        match self {
            Lang::Zh => &ACCOUNTS_ZH,
            Lang::En => &ACCOUNTS_EN,
        }
    }
}

pub(crate) const ACCOUNTS_ZH: AccountMsgs = AccountMsgs {
    edit_title: "修改姓名和负责的服务站",
    save: "保存",
    disable_title: "停用账号",
    disable_help: "停用后，此账号在网页和手机上的下一次请求即被拒绝；其记录的内容不会被删除，可随时重新启用。",
    disable_button: "停用",
    enable_button: "重新启用",
    notice_saved: "已保存。服务站的变更在手机下次同步时生效。",
    notice_disabled: "账号已停用。",
    notice_enabled: "账号已重新启用。",
    bootstrap_title: "不属于任何街镇的账号",
    bootstrap_help: "首次启动时建立的 admin 账号用于建立街镇和协调员。建好自己的账号后，请停用它。",
    disable_self_button: "停用此账号（我自己）",
    awaiting: "待处理的退回",
    revoke_help: "吊销后，手机在下次联网时删除本机上的服务对象数据。服务器只知道最近一次同步之前的记录；此后在手机上记录、尚未同步的内容不会丢失：手机把它们加密保存，同一用户的手机重新登记后交回服务器，出现在“被退回的记录”中由协调员处理。如手机仍可使用，请先让志愿者同步再吊销。",
};

pub(crate) const ACCOUNTS_EN: AccountMsgs = AccountMsgs {
    edit_title: "Name and stations",
    save: "Save",
    disable_title: "Disable the account",
    disable_help: "A disabled account is refused at its next request, on the web and on its phones; nothing it recorded is deleted, and it can be enabled again.",
    disable_button: "Disable",
    enable_button: "Enable again",
    notice_saved: "Saved. Station changes reach the phones at their next sync.",
    notice_disabled: "The account is disabled.",
    notice_enabled: "The account is enabled again.",
    bootstrap_title: "Accounts of no district",
    bootstrap_help: "The admin account made at the first start sets up districts and their coordinators. Once you have your own accounts, disable it.",
    disable_self_button: "Disable this account (mine)",
    awaiting: "Refused, awaiting a decision",
    revoke_help: "A revoked phone deletes the residents' data at its next contact. The server knows what was recorded up to the phone's last sync; anything recorded since is not lost: the phone seals it, and when the same user's phone is enrolled again it is handed to the server and appears under \"Refused changes\" for a coordinator to decide. If the phone is still at hand, have the volunteer sync before revoking.",
};

impl Lang {
    /// Why a case file was closed, for people.
    pub fn closure_reason(self, reason: sync_core::model::ClosureReason) -> &'static str {
        use sync_core::model::ClosureReason as R;
        match (self, reason) {
            (Lang::Zh, R::MovedAway) => "搬离",
            (Lang::Zh, R::InHospital) => "住院",
            (Lang::Zh, R::Deceased) => "去世",
            (Lang::Zh, R::Other) => "其他",
            (Lang::En, R::MovedAway) => "moved away",
            (Lang::En, R::InHospital) => "in hospital",
            (Lang::En, R::Deceased) => "deceased",
            (Lang::En, R::Other) => "other",
        }
    }
}

// ---- The access log (`access.rs`, issue 16) -----------------------------------------

/// The access log page's strings.
#[derive(Debug)]
pub(crate) struct AccessMsgs {
    pub nav: &'static str,
    pub title: &'static str,
    pub help: &'static str,
    pub when: &'static str,
    pub who: &'static str,
    pub what: &'static str,
    pub resident: &'static str,
    pub detail: &'static str,
    pub none: &'static str,
    pub older: &'static str,
    pub all: &'static str,
    /// Narrowed to one resident: `{name}`.
    pub about: &'static str,
    /// Narrowed to one user: `{name}`.
    pub by: &'static str,
    /// The resident page's link to its entries.
    pub resident_link: &'static str,
    view_resident: &'static str,
    export_visits: &'static str,
    view_refused: &'static str,
}

impl AccessMsgs {
    /// An action, for people.
    pub fn action(&self, action: crate::store::access::AccessAction) -> &'static str {
        use crate::store::access::AccessAction as A;
        match action {
            A::ViewResident => self.view_resident,
            A::ExportVisits => self.export_visits,
            A::ViewRefused => self.view_refused,
        }
    }
}

impl Lang {
    /// The access log's catalog.
    pub fn access(self) -> &'static AccessMsgs {
        match self {
            Lang::Zh => &ACCESS_ZH,
            Lang::En => &ACCESS_EN,
        }
    }
}

pub(crate) const ACCESS_ZH: AccessMsgs = AccessMsgs {
    nav: "访问记录",
    title: "访问记录",
    help: "谁在何时查看了哪位服务对象的档案、导出了哪些走访记录、打开了哪批被拒绝的修改。记录只增不删。",
    when: "时间",
    who: "查看人",
    what: "操作",
    resident: "服务对象",
    detail: "详情",
    none: "没有访问记录。",
    older: "更早的记录",
    all: "全部记录",
    about: "关于 {name} 的记录",
    by: "{name} 的记录",
    resident_link: "谁查看过此档案",
    view_resident: "查看档案",
    export_visits: "导出走访记录",
    view_refused: "查看被拒绝的修改",
};

pub(crate) const ACCESS_EN: AccessMsgs = AccessMsgs {
    nav: "Access log",
    title: "Access log",
    help: "Who viewed which resident's case file, exported which visits or opened which refused changes, and when. Entries are only ever added.",
    when: "When",
    who: "Who",
    what: "What",
    resident: "Resident",
    detail: "Detail",
    none: "No entries.",
    older: "Older entries",
    all: "All entries",
    about: "Entries about {name}",
    by: "Entries by {name}",
    resident_link: "Who viewed this case file",
    view_resident: "viewed the case file",
    export_visits: "exported visits",
    view_refused: "opened refused changes",
};
