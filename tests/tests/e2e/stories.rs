//! The phone library's stories against the real server.

use crate::world::*;
use mobile_ffi::store::{FILE_NAME, Store};
use mobile_ffi::sync_core::protocol::store::ReplicaStore;
use mobile_ffi::{
    CancelToken, CatalogKind, DueStatus, FollowUpStatus, LinliClient, LinliError, ReviewStatus,
    RiskLevel,
};

#[test]
fn two_phones_log_visits_offline_for_one_resident_and_both_see_both() {
    let w = World::new();
    let (coordinator, resident) = w.coordinator_with_resident("王阿婆");
    let project = coordinator
        .client
        .add_catalog_entry(
            CatalogKind::Project,
            "安守晚晴天".into(),
            "Safe at home".into(),
            None,
        )
        .unwrap();
    coordinator.sync().unwrap();
    let (wang, li) = (w.volunteer("wang"), w.volunteer("li"));
    w.assign(&wang, &resident);
    w.assign(&li, &resident);
    let (a, b) = (w.phone(&wang), w.phone(&li));
    for phone in [&a, &b] {
        let outcome = phone.sync().unwrap();
        assert!(
            outcome.complete && outcome.received_changes > 0,
            "{outcome:?}"
        );
        let residents = phone.client.residents().unwrap();
        assert_eq!(residents.len(), 1);
        assert_eq!(residents[0].name, "王阿婆");
        // Never visited and due every 7 days: on today's list.
        let due = phone.client.due_visits(now_ms(), 480).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].status, DueStatus::NeverVisited);
        let catalog = phone.client.catalog().unwrap().unwrap();
        assert_eq!(catalog.projects.len(), 1);
        assert_eq!(catalog.projects[0].id, project);
    }

    // Offline, in the stairwell: each logs a visit.
    let va = a.log(&resident, "读报");
    let vb = b.log(&resident, "检查插线板");
    for (phone, visit) in [(&a, &va), (&b, &vb)] {
        let status = phone.client.sync_status().unwrap();
        assert_eq!(status.pending_changes, 1);
        assert_eq!(status.unreceipted_visits.len(), 1);
        assert_eq!(&status.unreceipted_visits[0].visit_id, visit);
        let detail = phone.client.resident(resident.clone()).unwrap();
        assert!(!detail.visits[0].receipted);
        // Visited an hour ago: no longer due today.
        assert!(phone.client.due_visits(now_ms(), 480).unwrap().is_empty());
    }

    // At the station's Wi-Fi.
    let first = a.sync().unwrap();
    assert_eq!(first.sent_changes, 1);
    assert_eq!(first.receipted, vec![resident.clone()]);
    b.sync().unwrap();
    a.sync().unwrap();
    let mut both = vec![va.clone(), vb.clone()];
    both.sort();
    for phone in [&a, &b] {
        assert_eq!(phone.visit_ids(&resident), both);
        let detail = phone.client.resident(resident.clone()).unwrap();
        assert!(detail.visits.iter().all(|v| v.receipted), "{detail:?}");
        let status = phone.client.sync_status().unwrap();
        assert_eq!(status.pending_changes, 0);
        assert!(status.unreceipted_visits.is_empty());
    }

    // Amend and tombstone travel too; another's visit is not mine to amend.
    let mut amended = visit("读报，聊天");
    amended.follow_up_needed = false;
    amended.project = project.clone();
    amended.services = Vec::new();
    // A project the district's catalog does not hold is refused on the phone already.
    let unknown = a
        .client
        .amend_visit(resident.clone(), va.clone(), visit("读报，聊天"))
        .unwrap_err();
    assert!(
        matches!(&unknown, LinliError::NotAllowed { code, .. } if code == "unknown_reference"),
        "{unknown:?}"
    );
    a.client
        .amend_visit(resident.clone(), va.clone(), amended)
        .unwrap();
    let refused = a
        .client
        .tombstone_visit(resident.clone(), vb.clone())
        .unwrap_err();
    assert!(
        matches!(&refused, LinliError::NotAllowed { code, .. } if code == "not_owner"),
        "{refused:?}"
    );
    b.client
        .tombstone_visit(resident.clone(), vb.clone())
        .unwrap();
    a.sync().unwrap();
    b.sync().unwrap();
    a.sync().unwrap();
    for phone in [&a, &b] {
        let detail = phone.client.resident(resident.clone()).unwrap();
        let mine = detail.visits.iter().find(|v| v.id == va).unwrap();
        assert_eq!(mine.record.notes, "读报，聊天");
        assert!(
            detail
                .visits
                .iter()
                .find(|v| v.id == vb)
                .unwrap()
                .tombstoned
        );
        assert_eq!(phone.visit_ids(&resident), vec![va.clone()]);
    }
}

#[test]
fn a_review_and_a_follow_up_reach_the_volunteer_who_cannot_review() {
    let w = World::new();
    let (coordinator, resident) = w.coordinator_with_resident("李老伯");
    let wang = w.volunteer("wang");
    w.assign(&wang, &resident);
    let v = w.phone(&wang);
    v.sync().unwrap();
    let visit = v.log(&resident, "量血压 150/95");

    // The rules run on the phone: a volunteer may not review, and nothing is kept.
    let refused = v
        .client
        .review_visit(
            resident.clone(),
            visit.clone(),
            ReviewStatus::Approved,
            "好".into(),
        )
        .unwrap_err();
    assert!(
        matches!(&refused, LinliError::NotAllowed { code, .. } if code == "role_not_allowed"),
        "{refused:?}"
    );
    assert_eq!(v.client.sync_status().unwrap().pending_changes, 1);

    v.sync().unwrap();
    coordinator.sync().unwrap();
    coordinator
        .client
        .review_visit(
            resident.clone(),
            visit.clone(),
            ReviewStatus::NeedsAttention,
            "血压偏高，请下周复测".into(),
        )
        .unwrap();
    coordinator.sync().unwrap();
    assert!(v.client.feedback().unwrap().reviews.is_empty());
    v.sync().unwrap();
    let feedback = v.client.feedback().unwrap();
    assert_eq!(feedback.reviews.len(), 1);
    let review = &feedback.reviews[0];
    assert_eq!(review.visit_id, visit);
    assert_eq!(review.resident_name, "李老伯");
    assert_eq!(review.review.status, ReviewStatus::NeedsAttention);
    assert_eq!(review.review.comment, "血压偏高，请下周复测");
    assert_eq!(review.review.reviewer, w.coordinator);

    // A follow-up opened from the visit, owned by the volunteer, comes back too; the
    // volunteer comments and closes it, and the coordinator sees both.
    let deadline = now_ms() + 7 * 86_400_000;
    let ticket = coordinator
        .client
        .open_follow_up(
            resident.clone(),
            Some(visit.clone()),
            "一周内复测血压".into(),
            Some(wang.clone()),
            Some(deadline),
        )
        .unwrap();
    coordinator.sync().unwrap();
    v.sync().unwrap();
    let follow_ups = v.client.feedback().unwrap().follow_ups;
    assert_eq!(follow_ups.len(), 1);
    let f = &follow_ups[0].follow_up;
    assert_eq!(f.id, ticket);
    assert_eq!(f.visit.as_deref(), Some(visit.as_str()));
    assert_eq!(f.owner.as_deref(), Some(wang.as_str()));
    assert_eq!(f.deadline, Some(deadline));
    assert_eq!(f.status, FollowUpStatus::Open);
    v.client
        .comment_follow_up(resident.clone(), ticket.clone(), "已复测：135/85".into())
        .unwrap();
    v.client
        .close_follow_up(resident.clone(), ticket.clone(), "血压已正常".into())
        .unwrap();
    v.sync().unwrap();
    coordinator.sync().unwrap();
    let detail = coordinator.client.resident(resident.clone()).unwrap();
    let f = &detail.follow_ups[0];
    assert_eq!(f.status, FollowUpStatus::Closed);
    assert_eq!(f.resolution, "血压已正常");
    assert_eq!(f.comments.len(), 1);
    assert_eq!(f.comments[0].text, "已复测：135/85");
    assert_eq!(f.closed_by.as_deref(), Some(wang.as_str()));
}

#[test]
fn a_revoked_phone_is_purged_and_a_reassigned_resident_leaves() {
    let w = World::new();
    let (coordinator, kept) = w.coordinator_with_resident("王阿婆");
    let moved = coordinator
        .client
        .register_resident(w.station.clone(), profile("张阿姨"))
        .unwrap();
    coordinator.sync().unwrap();
    let wang = w.volunteer("wang");
    w.assign(&wang, &kept);
    w.assign(&wang, &moved);
    let v = w.phone(&wang);
    v.sync().unwrap();
    assert_eq!(v.client.residents().unwrap().len(), 2);

    w.unassign(&wang, &moved);
    let outcome = v.sync().unwrap();
    assert_eq!(outcome.purged, vec![moved.clone()]);
    let left: Vec<String> = v
        .client
        .residents()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, vec![kept.clone()]);
    assert!(matches!(
        v.client.resident(moved.clone()),
        Err(LinliError::NotFound { .. })
    ));

    v.log(&kept, "最后一次");
    w.revoke(&v.device());
    assert!(matches!(v.sync(), Err(LinliError::Revoked)));
    assert!(v.client.identity().unwrap().is_none());
    assert!(matches!(v.client.residents(), Err(LinliError::NotEnrolled)));
    // The unsynced visit is sealed for the server, not deleted.
    let export = v.client.revoked_export().unwrap().expect("a sealed export");
    assert!(
        !export
            .windows("最后一次".len())
            .any(|w| w == "最后一次".as_bytes())
    );
    // On disk: no document, no credential; the same key still opens the empty store.
    drop(v.client);
    let store = Store::open(v.dir.path(), &v.key).unwrap();
    assert!(store.doc_ids().unwrap().is_empty());
    assert!(store.meta("credentials").unwrap().is_none());
    let raw = std::fs::read(v.dir.path().join(FILE_NAME)).unwrap();
    assert!(
        !raw.windows("最后一次".len())
            .any(|w| w == "最后一次".as_bytes())
    );
    assert!(
        raw.len() < 64 * 1024,
        "the file was not compacted: {} bytes",
        raw.len()
    );
}

#[test]
fn a_wrong_key_is_refused_and_overwrites_nothing() {
    let w = World::new();
    let (coordinator, resident) = w.coordinator_with_resident("王阿婆");
    let dir = coordinator.dir.path().to_owned();
    let key = coordinator.key.clone();
    drop(coordinator.client);
    let file = dir.join(FILE_NAME);
    let before = std::fs::read(&file).unwrap();
    let wrong = LinliClient::open(dir.display().to_string(), vec![9; 32]).unwrap_err();
    assert!(matches!(wrong, LinliError::WrongKey), "{wrong:?}");
    assert_eq!(wrong.code(), "wrong_key");
    let short = LinliClient::open(dir.display().to_string(), vec![9; 16]).unwrap_err();
    assert!(matches!(short, LinliError::BadKey { len: 16 }), "{short:?}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let reopened = LinliClient::open(dir.display().to_string(), key).unwrap();
    assert_eq!(reopened.residents().unwrap()[0].id, resident);
}

#[test]
fn an_unreachable_server_is_a_retryable_error_and_loses_nothing() {
    let mut w = World::new();
    let (coordinator, resident) = w.coordinator_with_resident("王阿婆");
    let wang = w.volunteer("wang");
    w.assign(&wang, &resident);
    let v = w.phone(&wang);
    v.sync().unwrap();
    let visit = v.log(&resident, "断网时记录");
    w.server.stop();
    let error = v.sync().unwrap_err();
    assert!(matches!(error, LinliError::Network { .. }), "{error:?}");
    assert_eq!(error.code(), "network");
    assert_eq!(
        v.client.sync_status().unwrap().unreceipted_visits[0].visit_id,
        visit
    );
    // A phone that never reached it gets the same from enrolment.
    let fresh = Phone::new();
    let error = fresh
        .client
        .enrol(w.server.base.clone(), "123456".into(), "p".into())
        .unwrap_err();
    assert!(matches!(error, LinliError::Network { .. }), "{error:?}");
    drop(coordinator);
}

#[test]
fn a_cancelled_sync_stops_before_its_next_round_trip() {
    let w = World::new();
    let (coordinator, resident) = w.coordinator_with_resident("王阿婆");
    coordinator.log(&resident, "取消前");
    let cancel = CancelToken::new();
    cancel.cancel();
    assert!(matches!(
        coordinator.client.sync(cancel),
        Err(LinliError::Cancelled)
    ));
    assert_eq!(coordinator.client.sync_status().unwrap().pending_changes, 1);
    let outcome = coordinator.sync().unwrap();
    assert_eq!(outcome.receipted, vec![resident]);
}

#[test]
fn a_used_enrolment_code_is_refused_and_an_erased_phone_enrols_again() {
    let w = World::new();
    let wang = w.volunteer("wang");
    let code = w.code(&wang);
    let first = Phone::new();
    first
        .client
        .enrol(w.server.base.clone(), code.clone(), "a".into())
        .unwrap();
    assert!(matches!(
        first
            .client
            .enrol(w.server.base.clone(), code.clone(), "a".into()),
        Err(LinliError::AlreadyEnrolled)
    ));
    let second = Phone::new();
    let error = second
        .client
        .enrol(w.server.base.clone(), code, "b".into())
        .unwrap_err();
    assert!(
        matches!(&error, LinliError::BadCredentials { .. }),
        "{error:?}"
    );
    assert!(second.client.identity().unwrap().is_none());

    // Signing out erases the phone; it can then enrol again with a new code.
    let wang_resident = first.client.residents().unwrap();
    assert!(wang_resident.is_empty());
    first.client.erase().unwrap();
    assert!(first.client.identity().unwrap().is_none());
    assert!(matches!(
        first.client.residents(),
        Err(LinliError::NotEnrolled)
    ));
    let again = first
        .client
        .enrol(w.server.base.clone(), w.code(&wang), "a".into())
        .unwrap();
    assert_eq!(again.user_id, wang);
    assert!(first.sync().unwrap().complete);
}

#[test]
fn a_visit_logged_after_the_resident_was_reassigned_away_is_kept_until_a_person_decides() {
    let w = World::new();
    let (_coordinator, resident) = w.coordinator_with_resident("王阿婆");
    let wang = w.volunteer("wang");
    w.assign(&wang, &resident);
    let v = w.phone(&wang);
    v.sync().unwrap();
    // Offline, the volunteer still holds the resident and logs a visit; meanwhile the
    // coordinator has reassigned the resident away.
    w.unassign(&wang, &resident);
    v.log(&resident, "离线时记录");
    let outcome = v.sync().unwrap();
    assert_eq!(outcome.rejections.len(), 1, "{outcome:?}");
    let rejection = &outcome.rejections[0];
    assert_eq!(rejection.doc_id, resident);
    assert_eq!(rejection.code, "out_of_scope");
    assert!(!rejection.reason.is_empty());
    assert_eq!(outcome.purged, vec![resident.clone()]);
    assert!(v.client.residents().unwrap().is_empty());
    let status = v.client.sync_status().unwrap();
    assert_eq!(status.pending_changes, 0);

    // The visit is not gone: the phone lists it as refused, with the reason, until a
    // person decides; the volunteer cannot drop it before then.
    assert_eq!(status.refused, 1);
    let refused = v.client.refused_changes().unwrap();
    assert_eq!(refused.len(), 1);
    let r = &refused[0];
    assert_eq!(
        (r.resident_id.as_str(), r.resident_name.as_str()),
        (resident.as_str(), "王阿婆")
    );
    assert_eq!(r.code, "out_of_scope");
    assert_eq!(r.reason, rejection.reason);
    assert_eq!(r.visits.len(), 1);
    assert_eq!(r.visits[0].notes, "离线时记录");
    assert_eq!(r.dismissed, None);
    let early = v.client.acknowledge_refused(r.quarantine).unwrap_err();
    assert!(matches!(&early, LinliError::AwaitingDecision), "{early:?}");
    // It survives the app being closed and opened again.
    let mut v = v;
    v.reopen();
    v.sync().unwrap();
    assert_eq!(v.client.refused_changes().unwrap(), refused);

    // The coordinator dismisses it on the refused-changes page, saying why.
    let mut web = Web::sign_in(&w.server, "coordinator", COORDINATOR_PASSWORD);
    let page = format!("/web/quarantine/{}", r.quarantine);
    let (status, html) = web.get(&page);
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("离线时记录"), "{html}");
    let csrf = field(&html, "csrf");
    let (status, _) = web.post(
        &format!("{page}/dismiss"),
        &[
            ("csrf", &csrf),
            ("note", "王阿婆已转给张师傅，请勿重复走访"),
        ],
    );
    assert_eq!(status, 303);
    v.sync().unwrap();
    let refused = v.client.refused_changes().unwrap();
    let note = refused[0].dismissed.clone().unwrap();
    assert!(note.contains("王阿婆已转给张师傅"), "{note}");
    // Read: now it may go.
    v.client.acknowledge_refused(r.quarantine).unwrap();
    assert!(v.client.refused_changes().unwrap().is_empty());
    assert_eq!(v.client.sync_status().unwrap().refused, 0);
}

#[test]
fn a_phone_whose_clock_runs_two_days_fast_loses_no_visit() {
    let w = World::new();
    let (coordinator, resident) = w.coordinator_with_resident("王阿婆");
    let wang = w.volunteer("wang");
    w.assign(&wang, &resident);
    let v = w.phone(&wang);
    v.sync().unwrap();
    // Weeks offline, the phone's clock drifted two days ahead; the app takes the
    // visit's times from it.
    let fast = 2 * 86_400_000;
    v.client.set_clock_offset_for_tests(fast);
    let mut input = visit("钟快了两天");
    input.started_at += fast;
    input.ended_at += fast;
    let id = v.client.log_visit(resident.clone(), input).unwrap();
    let outcome = v.sync().unwrap();
    assert!(outcome.rejections.is_empty(), "{outcome:?}");
    assert_eq!(outcome.receipted, vec![resident.clone()]);
    let status = v.client.sync_status().unwrap();
    assert_eq!((status.pending_changes, status.refused), (0, 0));
    // Another phone sees it.
    coordinator.sync().unwrap();
    assert!(coordinator.visit_ids(&resident).contains(&id));
}

#[test]
fn a_volunteer_updates_a_residents_phone_but_not_their_risk_level() {
    let w = World::new();
    let (coordinator, resident) = w.coordinator_with_resident("王阿婆");
    let wang = w.volunteer("wang");
    w.assign(&wang, &resident);
    let v = w.phone(&wang);
    v.sync().unwrap();
    let mut profile = v.client.resident(resident.clone()).unwrap().profile;
    // Saved unchanged: nothing is written.
    assert!(
        v.client
            .update_profile(resident.clone(), profile.clone())
            .unwrap()
            .is_empty()
    );
    assert_eq!(v.client.sync_status().unwrap().pending_changes, 0);
    // The risk level is for staff: refused on the phone, nothing kept.
    let mut risky = profile.clone();
    risky.risk_level = Some(RiskLevel::Low);
    let refused = v
        .client
        .update_profile(resident.clone(), risky)
        .unwrap_err();
    assert!(
        matches!(&refused, LinliError::NotAllowed { code, .. } if code == "role_not_allowed"),
        "{refused:?}"
    );
    assert_eq!(v.client.sync_status().unwrap().pending_changes, 0);
    // A new phone number is the volunteer's to record.
    profile.phone = "13912345678".into();
    let written = v.client.update_profile(resident.clone(), profile).unwrap();
    assert_eq!(written, vec!["phone".to_owned()]);
    assert_eq!(v.sync().unwrap().receipted, vec![resident.clone()]);
    coordinator.sync().unwrap();
    let seen = coordinator.client.resident(resident).unwrap().profile;
    assert_eq!(seen.phone, "13912345678");
    assert_eq!(seen.risk_level, Some(RiskLevel::High));
}

#[test]
fn a_revoked_phones_unsynced_visit_reaches_the_coordinator_when_it_enrols_again() {
    let w = World::new();
    let (coordinator, resident) = w.coordinator_with_resident("王阿婆");
    let wang = w.volunteer("wang");
    w.assign(&wang, &resident);
    let mut v = w.phone(&wang);
    v.sync().unwrap();
    // Revoked (reported lost, say) while it held a visit it never synced.
    let visit = v.log(&resident, "吊销前没来得及同步");
    let old_device = v.device();
    w.revoke(&old_device);
    assert!(matches!(v.sync(), Err(LinliError::Revoked)));
    assert!(v.client.revoked_export().unwrap().is_some());
    // The phone turns up: the app restarts, and a coordinator enrols it again.
    v.reopen();
    assert!(v.client.revoked_export().unwrap().is_some());
    v.client
        .enrol(w.server.base.clone(), w.code(&wang), "found again".into())
        .unwrap();
    let outcome = v.sync().unwrap();
    assert_eq!(outcome.recovered, 1, "{outcome:?}");
    assert!(v.client.revoked_export().unwrap().is_none());
    assert!(v.sync().unwrap().complete);

    // The coordinator finds it among the refused changes and accepts it.
    let mut web = Web::sign_in(&w.server, "coordinator", COORDINATOR_PASSWORD);
    let (status, list) = web.get("/web/quarantine");
    assert_eq!(status, 200);
    assert!(
        list.contains("吊销前没来得及同步") && list.contains("recovered"),
        "{list}"
    );
    let number = list
        .split("id=\"refusal-")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let page = format!("/web/quarantine/{number}");
    let (_, html) = web.get(&page);
    let csrf = field(&html, "csrf");
    let (status, _) = web.post(&format!("{page}/accept"), &[("csrf", &csrf)]);
    assert_eq!(status, 303);
    coordinator.sync().unwrap();
    assert!(coordinator.visit_ids(&resident).contains(&visit));
    // Handed over once only.
    assert_eq!(v.sync().unwrap().recovered, 0);
}
