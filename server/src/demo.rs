//! `--demo`: a fictional sub-district to try the pages with. 梧桐街道 has eight service
//! stations, the seven alliances with member units, their projects, a coordinator, a
//! staff member per station, forty volunteers and two hundred elderly residents, with
//! four months of visits, hazards found (some fixed on the spot), follow-ups and
//! reviews. Everyone and everything in it is made up.
//!
//! Every document is written through the core (`CaseFile`, `CatalogDoc`) by the person
//! who would write it, under the rules, and stored with the normal append, so the
//! projections, the feed and the pages see exactly what real use would give them.
//! The data are the same on every run (a seeded generator), but dated from today.

use crate::error::{Error, Result};
use crate::store::{SqlStore, with_pool};
use std::collections::BTreeSet;
use sync_core::automerge::{ActorId, Automerge, Change};
use sync_core::doc::casefile::CaseFile;
use sync_core::doc::catalog::{CatalogDoc, EntryInput};
use sync_core::ids::*;
use sync_core::model::*;
use sync_core::protocol::server::place_of;
use sync_core::protocol::store::{Append, AppendOutcome, ServerStore};
use sync_core::rules::Editor;
use uuid::Uuid;

/// The demo district's name.
pub const DISTRICT: &str = "梧桐街道（演示）";
/// The password of every demo account.
pub const PASSWORD: &str = "linli-demo-2026";
/// The coordinator's login.
pub const COORDINATOR: &str = "demo-coordinator";

/// What the demo holds, for the start-up message and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    pub stations: usize,
    pub volunteers: usize,
    pub residents: usize,
    pub visits: usize,
    pub follow_ups: usize,
}

/// A small deterministic generator (SplitMix64): the demo is the same on every run.
#[derive(Debug)]
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n.
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, list: &'a [T]) -> &'a T {
        &list[self.below(list.len())]
    }

    fn uuid(&mut self) -> Uuid {
        Uuid::from_u64_pair(self.next(), self.next())
    }

    /// A UUIDv7 at `ms`, as a phone would make it.
    fn uuid_at(&mut self, ms: Timestamp) -> Uuid {
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&self.next().to_le_bytes());
        random[8..].copy_from_slice(&self.next().to_le_bytes()[..2]);
        uuid::Builder::from_unix_timestamp_millis(u64::try_from(ms).unwrap_or(0), &random)
            .into_uuid()
    }

    fn actor(&mut self) -> ActorId {
        ActorId::from(self.uuid().as_bytes().as_slice())
    }
}

const STATIONS: &[&str] = &[
    "梧桐一村党群服务站",
    "梧桐二村党群服务站",
    "春晖苑党群服务站",
    "和平新村党群服务站",
    "翠竹园党群服务站",
    "长乐里党群服务站",
    "云锦苑党群服务站",
    "东篱新村党群服务站",
];

/// (name, English name, member units (name, English name)).
type Alliance = (
    &'static str,
    &'static str,
    [(&'static str, &'static str); 4],
);

const ALLIANCES: [Alliance; 7] = [
    (
        "红色联盟（党建教育）",
        "Red alliance (political education)",
        [
            ("梧桐街道机关党支部", "Sub-district office party branch"),
            ("驻区部队某连", "Army company stationed nearby"),
            ("梧桐中学", "Wutong Middle School"),
            ("区档案馆", "District archives"),
        ],
    ),
    (
        "橙色联盟（文明创建）",
        "Orange alliance (civility)",
        [
            ("梧桐物业公司", "Wutong property management"),
            ("春晖超市", "Chunhui supermarket"),
            ("公交五场", "Bus depot No. 5"),
            ("梧桐小学", "Wutong Primary School"),
        ],
    ),
    (
        "金色联盟（关爱独居老人）",
        "Gold alliance (care for elders living alone)",
        [
            ("梧桐供电所", "Wutong power supply office"),
            ("城市银行梧桐支行", "City Bank, Wutong branch"),
            ("梧桐消防救援站", "Wutong fire and rescue station"),
            ("燃气公司梧桐营业所", "Gas company, Wutong office"),
        ],
    ),
    (
        "绿色联盟（健康服务）",
        "Green alliance (health)",
        [
            ("梧桐社区卫生服务中心", "Wutong community health centre"),
            ("区中心医院", "District central hospital"),
            ("康宁药房", "Kangning pharmacy"),
            ("医学院志愿者协会", "Medical college volunteers"),
        ],
    ),
    (
        "蓝色联盟（环境保护）",
        "Blue alliance (environment)",
        [
            ("环卫所梧桐分所", "Sanitation office, Wutong"),
            ("水务公司", "Water company"),
            ("绿化市容所", "Greening and city appearance office"),
            ("再生资源回收站", "Recycling station"),
        ],
    ),
    (
        "靛色联盟（法律援助）",
        "Indigo alliance (legal aid)",
        [
            ("明理律师事务所", "Mingli law firm"),
            ("梧桐司法所", "Wutong judicial office"),
            ("梧桐派出所", "Wutong police station"),
            ("公证处", "Notary office"),
        ],
    ),
    (
        "紫色联盟（文化艺术）",
        "Purple alliance (arts)",
        [
            ("区文化馆", "District cultural centre"),
            ("梧桐图书馆", "Wutong library"),
            ("青年书画社", "Youth calligraphy society"),
            ("社区合唱团", "Community choir"),
        ],
    ),
];

/// (name, English name, index of the alliance running it).
const PROJECTS: &[(&str, &str, usize)] = &[
    ("安守晚晴天", "Safe evenings (home safety)", 2),
    ("心暖耄耋", "Warm hearts for the very old", 2),
    ("健康365", "Health 365", 3),
    ("法律进社区", "Law in the community", 5),
    ("文明楼道", "Civil stairwells", 1),
    ("艺术进家门", "Arts at home", 6),
];

const SERVICES: &[(&str, &str)] = &[
    ("读报聊天", "Reading and chatting"),
    ("心理疏导", "Psychological comfort"),
    ("用电隐患排查", "Electrical safety check"),
    ("消防安全宣传", "Fire-safety advice"),
    ("防跌倒指导", "Fall prevention"),
    ("测量血压", "Blood pressure check"),
    ("测量血糖", "Blood sugar check"),
    ("防诈骗提醒", "Anti-fraud warning"),
    ("用药指导", "Medication advice"),
    ("燃气安全检查", "Gas safety check"),
];

const HAZARDS: &[(&str, &str)] = &[
    ("插线板老化", "Worn power strip"),
    ("电线裸露", "Exposed wiring"),
    ("燃气软管老化", "Aged gas hose"),
    ("地面湿滑", "Slippery floor"),
    ("过期药品", "Expired medicines"),
    ("楼道堆物", "Stairwell clutter"),
];

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙", "朱", "马", "胡", "郭",
    "林", "何", "高", "罗", "郑", "梁", "谢", "宋", "唐", "许", "邓", "冯", "韩", "曹",
];
const ELDER_NAMES: &[&str] = &[
    "桂英", "秀兰", "玉珍", "凤英", "翠花", "淑珍", "美华", "秀珍", "金娣", "阿妹", "国强", "建国",
    "福生", "根宝", "志明", "德明", "永康", "荣华", "家驹", "文彬", "惠芳", "素琴",
];
const YOUNG_NAMES: &[&str] = &[
    "晓燕", "海峰", "丽娜", "志强", "婷婷", "俊杰", "雪梅", "浩然", "静怡", "子轩", "思远", "佳怡",
    "宇航", "欣然", "明辉", "晨曦",
];
const STREETS: &[&str] = &[
    "梧桐路",
    "春晖路",
    "和平路",
    "翠竹街",
    "长乐路",
    "云锦路",
    "东篱路",
];
const NOTES: &[&str] = &[
    "老人精神不错，聊了家常，读了报纸。",
    "提醒老人不要轻信陌生电话，留下了社区电话。",
    "检查了厨房和卧室的电线，讲解了用电安全。",
    "老人说最近膝盖疼，建议去社区医院看看。",
    "帮老人整理了药盒，过期的药已经收走。",
    "老人独自在家，情绪有些低落，陪她聊了一个小时。",
    "演练了火灾逃生路线，老人记住了。",
    "量了血压，比上次略高，已告知家属。",
];

const DAY: i64 = 86_400_000;

struct Person {
    id: UserId,
    actor: ActorId,
    station: usize,
}

fn principal(user: UserId, role: Role, district: DistrictId, scope: Option<Scope>) -> Principal {
    Principal {
        user,
        role,
        scope: scope.unwrap_or(Scope::District(district)),
    }
}

fn core(e: sync_core::Error) -> Error {
    Error::Internal(format!("building the demo: {e}"))
}

/// Stores a document made here, as one append.
async fn store_new(store: &SqlStore, doc: DocId, after: &Automerge, now: Timestamp) -> Result<()> {
    let changes: Vec<Change> = after.get_changes(&[]);
    let place =
        place_of(after).ok_or_else(|| Error::Internal("demo document has no place".into()))?;
    let outcome = store
        .append(Append {
            doc,
            place,
            expected_heads: &[],
            changes: changes.iter().map(|c| c.raw_bytes().to_vec()).collect(),
            hashes: changes.iter().map(Change::hash).collect(),
            after,
            device: None,
            user: None,
            received_at: now,
        })
        .await?;
    match outcome {
        AppendOutcome::Stored(_) => Ok(()),
        AppendOutcome::HeadsMoved => Err(Error::Conflict(format!("demo document {doc} exists"))),
    }
}

/// Seeds the demo into an empty database; does nothing if the demo district is there
/// already; refuses a database that holds anything else, so real data never mixes with
/// fiction.
pub async fn seed(store: &SqlStore, now: Timestamp) -> Result<Option<Seeded>> {
    let names: Vec<String> = with_pool!(store, p => sqlx::query_scalar("SELECT name FROM districts")
        .fetch_all(p).await?);
    if names.iter().any(|n| n == DISTRICT) {
        return Ok(None);
    }
    if !names.is_empty() {
        return Err(Error::Config(format!(
            "--demo seeds only an empty database, and this one has districts ({}); \
             use another --data-dir or --database-url",
            names.join(", ")
        )));
    }
    let mut dice = Dice(0x6c69_6e6c_6964_656d);
    let start = now - 120 * DAY;
    let district = store.create_district(DISTRICT, start).await?;
    let mut stations = Vec::new();
    for name in STATIONS {
        stations.push(store.create_station(district, name, start).await?);
    }

    // People. Only the coordinator and the staff sign in on the web.
    let coordinator = Person {
        id: store
            .create_user(
                COORDINATOR,
                "陈协调",
                Role::Coordinator,
                Some(district),
                &[],
                Some(PASSWORD),
                start,
            )
            .await?,
        actor: dice.actor(),
        station: 0,
    };
    let mut staff = Vec::new();
    for (i, s) in stations.iter().enumerate() {
        let name = format!("{}{}", dice.pick(SURNAMES), dice.pick(YOUNG_NAMES));
        let id = store
            .create_user(
                &format!("demo-staff-{}", i + 1),
                &name,
                Role::StationStaff,
                Some(district),
                &[*s],
                Some(PASSWORD),
                start,
            )
            .await?;
        staff.push(Person {
            id,
            actor: store.web_actor(id).await?,
            station: i,
        });
    }
    let mut volunteers = Vec::new();
    for i in 0..40 {
        let name = format!("{}{}", dice.pick(SURNAMES), dice.pick(YOUNG_NAMES));
        let id = store
            .create_user(
                &format!("demo-volunteer-{}", i + 1),
                &name,
                Role::Volunteer,
                Some(district),
                &[],
                None,
                start,
            )
            .await?;
        volunteers.push(Person {
            id,
            actor: dice.actor(),
            station: i % stations.len(),
        });
    }

    // The catalog, written by the coordinator.
    let coord = principal(coordinator.id, Role::Coordinator, district, None);
    let editor = Editor {
        principal: &coord,
        now: start,
    };
    let mut catalog =
        CatalogDoc::create(coordinator.actor.clone(), &editor, district).map_err(core)?;
    let entry = |kind, id, name, name_en, parent| EntryInput {
        kind,
        id,
        name,
        name_en,
        parent,
        archived: false,
    };
    let mut entries = Vec::new();
    for (i, s) in stations.iter().enumerate() {
        entries.push(entry(
            CatalogKind::Station,
            s.0,
            STATIONS[i],
            STATIONS[i],
            None,
        ));
    }
    let mut alliance_ids = Vec::new();
    let mut units: Vec<(UnitId, usize)> = Vec::new();
    for (a, (name, name_en, members)) in ALLIANCES.iter().enumerate() {
        let id = dice.uuid();
        alliance_ids.push(id);
        entries.push(entry(CatalogKind::Alliance, id, name, name_en, None));
        for (unit, unit_en) in members {
            let u = dice.uuid();
            units.push((UnitId(u), a));
            entries.push(entry(CatalogKind::Unit, u, unit, unit_en, Some(id)));
        }
    }
    let mut projects = Vec::new();
    for (name, name_en, a) in PROJECTS {
        let id = dice.uuid();
        projects.push((ProjectId(id), *a));
        entries.push(entry(
            CatalogKind::Project,
            id,
            name,
            name_en,
            alliance_ids.get(*a).copied(),
        ));
    }
    let mut services = Vec::new();
    for (name, name_en) in SERVICES {
        let id = dice.uuid();
        services.push(ServiceTypeId(id));
        entries.push(entry(CatalogKind::ServiceType, id, name, name_en, None));
    }
    let mut hazards = Vec::new();
    for (name, name_en) in HAZARDS {
        let id = dice.uuid();
        hazards.push(HazardTypeId(id));
        entries.push(entry(CatalogKind::HazardType, id, name, name_en, None));
    }
    catalog.put_entries(&editor, &entries).map_err(core)?;
    store_new(store, DocId::from(district), catalog.doc(), start).await?;

    // Residents: each registered by their station's staff, visited by one or two
    // volunteers of that station every week or three, reviewed by the staff.
    let mut seeded = Seeded {
        stations: stations.len(),
        volunteers: volunteers.len(),
        ..Seeded::default()
    };
    let mut assignments = Vec::new();
    for r in 0..200 {
        let s = r % stations.len();
        let station = stations[s];
        let staffer = &staff[s];
        let id = ResidentId(dice.uuid_at(start));
        let staff_scope = Scope::Stations {
            district,
            stations: BTreeSet::from([station]),
        };
        let staff_principal =
            principal(staffer.id, Role::StationStaff, district, Some(staff_scope));
        let registered = start + i64::try_from(dice.below(10)).unwrap_or(0) * DAY;
        let profile = Profile {
            name: format!("{}{}", dice.pick(SURNAMES), dice.pick(ELDER_NAMES)),
            address: format!(
                "{}{}弄{}号{}室",
                dice.pick(STREETS),
                10 + dice.below(300),
                1 + dice.below(40),
                101 + dice.below(6) * 100
            ),
            phone: format!("021-5{:07}", dice.below(10_000_000)),
            birth_year: Some(1928 + i64::try_from(dice.below(28)).unwrap_or(0)),
            living_situation: Some(*dice.pick(&[
                LivingSituation::Alone,
                LivingSituation::Alone,
                LivingSituation::Alone,
                LivingSituation::WithSpouse,
                LivingSituation::WithFamily,
            ])),
            emergency_contact: format!(
                "子女 {}{} 139{:08}",
                dice.pick(SURNAMES),
                dice.pick(YOUNG_NAMES),
                dice.below(100_000_000)
            ),
            needs: String::new(),
            risk_level: Some(*dice.pick(&[
                RiskLevel::Low,
                RiskLevel::Medium,
                RiskLevel::Medium,
                RiskLevel::High,
            ])),
            visit_every_days: Some(*dice.pick(&[7, 14, 14, 21])),
        };
        let editor = Editor {
            principal: &staff_principal,
            now: registered,
        };
        let mut file = CaseFile::create(
            staffer.actor.clone(),
            &editor,
            id,
            district,
            station,
            &profile,
        )
        .map_err(core)?;

        let mine: Vec<&Person> = volunteers.iter().filter(|v| v.station == s).collect();
        let visitors: Vec<&Person> = (0..1 + dice.below(2)).map(|_| *dice.pick(&mine)).collect();
        for v in &visitors {
            assignments.push((v.id, id));
        }
        let every = profile.visit_every_days.unwrap_or(14);
        let mut day = registered + i64::try_from(dice.below(5)).unwrap_or(0) * DAY;
        while day < now - DAY {
            let v = *dice.pick(&visitors);
            let started_at = day + (9 + i64::try_from(dice.below(8)).unwrap_or(0)) * 3_600_000;
            let ended_at = started_at + (20 + i64::try_from(dice.below(70)).unwrap_or(0)) * 60_000;
            let (project, alliance) = *dice.pick(&projects);
            let unit = units
                .iter()
                .filter(|(_, a)| *a == alliance)
                .map(|(u, _)| *u)
                .nth(dice.below(4));
            let found: Vec<Hazard> = if dice.chance(12) {
                vec![Hazard {
                    hazard_type: *dice.pick(&hazards),
                    severity: *dice.pick(&[
                        Severity::Low,
                        Severity::Medium,
                        Severity::Medium,
                        Severity::High,
                    ]),
                    fixed_on_spot: dice.chance(55),
                    note: String::new(),
                }]
            } else {
                Vec::new()
            };
            let wellbeing = *dice.pick(&[
                Wellbeing::Good,
                Wellbeing::Good,
                Wellbeing::Good,
                Wellbeing::Fair,
                Wellbeing::Fair,
                Wellbeing::Poor,
            ]);
            let unfixed = found.iter().any(|h| !h.fixed_on_spot);
            let mut chosen: Vec<ServiceTypeId> = (0..1 + dice.below(3))
                .map(|_| *dice.pick(&services))
                .collect();
            chosen.sort();
            chosen.dedup();
            let record = VisitRecord {
                project,
                unit,
                started_at,
                ended_at,
                services: chosen,
                condition: Condition {
                    wellbeing,
                    systolic: Some(115 + i64::try_from(dice.below(50)).unwrap_or(0)),
                    diastolic: Some(70 + i64::try_from(dice.below(25)).unwrap_or(0)),
                    blood_sugar_dmmol: None,
                    remarks: String::new(),
                },
                hazards: found,
                notes: dice.pick(NOTES).to_string(),
                follow_up_needed: unfixed || wellbeing == Wellbeing::Poor,
            };
            let visit = VisitId(dice.uuid_at(started_at));
            let vol_scope = Scope::Residents {
                district,
                residents: BTreeSet::from([id]),
            };
            let vol = principal(v.id, Role::Volunteer, district, Some(vol_scope));
            let doc = file.clone().into_doc().with_actor(v.actor.clone());
            let mut as_volunteer = CaseFile::from_doc(doc).map_err(core)?;
            as_volunteer
                .log_visit(
                    &Editor {
                        principal: &vol,
                        now: ended_at + 600_000,
                    },
                    visit,
                    &record,
                )
                .map_err(core)?;
            file = as_volunteer;
            seeded.visits += 1;

            // The staff review what is more than a few days old, and open a follow-up
            // for what needs one.
            let doc = file.clone().into_doc().with_actor(staffer.actor.clone());
            let mut as_staff = CaseFile::from_doc(doc).map_err(core)?;
            let later = ended_at + (1 + i64::try_from(dice.below(3)).unwrap_or(0)) * DAY;
            if later < now {
                let editor = Editor {
                    principal: &staff_principal,
                    now: later,
                };
                if record.follow_up_needed {
                    as_staff
                        .review_visit(&editor, visit, ReviewStatus::NeedsAttention, "请跟进处理")
                        .map_err(core)?;
                    let title = if unfixed {
                        "上门整改安全隐患"
                    } else {
                        "联系家属，关注老人身体状况"
                    };
                    let f = FollowUpId(dice.uuid_at(later));
                    as_staff
                        .open_follow_up(
                            &editor,
                            f,
                            Some(visit),
                            title,
                            Some(v.id),
                            Some(later + 7 * DAY),
                        )
                        .map_err(core)?;
                    seeded.follow_ups += 1;
                    if later + 5 * DAY < now && dice.chance(70) {
                        let closing = Editor {
                            principal: &staff_principal,
                            now: later + 5 * DAY,
                        };
                        as_staff
                            .close_follow_up(&closing, f, "已处理")
                            .map_err(core)?;
                    }
                } else if dice.chance(80) {
                    as_staff
                        .review_visit(&editor, visit, ReviewStatus::Approved, "")
                        .map_err(core)?;
                }
            }
            file = as_staff;
            day += (every + i64::try_from(dice.below(5)).unwrap_or(0) - 2) * DAY;
        }
        store_new(store, DocId(id.0), file.doc(), now).await?;
        seeded.residents += 1;
    }
    for (volunteer, resident) in assignments {
        match store.assign(&coord, volunteer, resident, now).await {
            Ok(()) | Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(seeded))
}
