//! `--demo`: the fictional sub-district is seeded through the core and the normal
//! append, only into an empty database, and the pages show it to its coordinator and,
//! station by station, to its staff.

use crate::backends::{TestStore, conformance};
use crate::serving::TestServer;
use crate::web::{field_href, visits_listed};
use crate::web_client::Browser;
use server::demo::{self, COORDINATOR, PASSWORD};
use sync_core::doc::catalog::CatalogDoc;
use sync_core::ids::DocId;
use sync_core::protocol::store::ServerStore;

async fn demo_seeds_a_sub_district(t: TestStore) {
    let server = TestServer::start(t).await;
    let store = server.store();
    let now = server::now_ms();
    let seeded = demo::seed(store, now).await.unwrap().expect("seeded");
    assert_eq!(
        (seeded.stations, seeded.volunteers, seeded.residents),
        (8, 40, 200)
    );
    assert!((1_000..5_000).contains(&seeded.visits), "{seeded:?}");
    assert!(seeded.follow_ups > 20, "{seeded:?}");
    // Everything is stored as documents and projected consistently.
    assert!(store.check().await.unwrap().ok());
    assert!(store.check_projections().await.unwrap().is_clean());
    let district = store.district_named(demo::DISTRICT).await.unwrap();
    let catalog = CatalogDoc::from_doc(store.load(DocId::from(district)).await.unwrap().unwrap())
        .unwrap()
        .hydrate()
        .unwrap();
    assert_eq!(catalog.alliances.len(), 7);
    assert_eq!(catalog.units.len(), 28);
    assert!(catalog.units.iter().all(|u| u.parent.is_some()));
    // A second start leaves it alone.
    assert_eq!(demo::seed(store, now).await.unwrap(), None);

    // The coordinator sees the district, newest first, fifty a page.
    let mut b = Browser::new(&server);
    b.sign_in(COORDINATOR, PASSWORD).await.expect(303);
    let first = b.page("/web/visits").await;
    assert_eq!(visits_listed(&first).len(), 50);
    assert!(
        first.contains("安守晚晴天") || first.contains("健康365") || first.contains("心暖耄耋")
    );
    b.page(&field_href(&first, "next-page")).await;
    let hazards = b.page("/web/visits?hazards=yes").await;
    assert!(!visits_listed(&hazards).is_empty());
    // The first station's staff see only its visits.
    let mut s = Browser::new(&server);
    s.sign_in("demo-staff-1", PASSWORD).await.expect(303);
    let theirs = s.page("/web/visits").await;
    assert_eq!(visits_listed(&theirs).len(), 50);
    assert!(theirs.contains("梧桐一村党群服务站"));
    assert!(!theirs.contains("梧桐二村党群服务站"));
    server.stop().await;
}

async fn demo_refuses_a_database_with_real_data(t: TestStore) {
    t.store
        .create_district("彭浦镇", server::now_ms())
        .await
        .unwrap();
    let refused = demo::seed(&t.store, server::now_ms()).await;
    assert!(
        matches!(refused, Err(server::Error::Config(_))),
        "{refused:?}"
    );
    assert!(t.store.district_named(demo::DISTRICT).await.is_err());
}

conformance!(
    demo_seeds_a_sub_district,
    demo_refuses_a_database_with_real_data
);
