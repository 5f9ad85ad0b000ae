//! The server's integration tests: one binary. Every storage test runs against SQLite
//! and PostgreSQL.

// In tests an unwrap is an assertion: a panic is a test failure with its message.
#![allow(clippy::unwrap_used)]

mod backends;
mod binary; // The real server binary, run by tests.
mod bodies;
mod browser;
mod browser_accounts; // Accounts and a station move in a browser (issue 12).
mod browser_care; // A resident's care in a browser (issue 12).
mod browser_follow_ups; // Follow-up tickets in a browser (issue 5).
mod browser_quarantine; // Refused changes in a browser (issue 12).
mod demo;
mod faults; // A full disk and the database away, on both backends (issue 16).
mod http;
mod hub_binary; // The hub binary killed mid-forward (issue 15).
mod hub_story; // A station hub with the uplink cut and restored (issue 15).
mod hubs; // Station hubs on the district server (issue 15).
mod instances; // Three server processes on one PostgreSQL (issue 14).
mod kill;
mod ops;
mod phone;
mod projections;
mod proxy; // Phones syncing through a fault proxy (issue 16).
mod recover; // A revoked phone's sealed export (issue 12).
mod serving;
mod store;
mod sync;
mod web;
mod web_access; // The access log (issue 16).
mod web_accounts; // Editing and disabling accounts (issue 12).
mod web_admin; // Administration (issue 5).
mod web_care; // A resident's volunteers, profile and station (issue 12).
mod web_client; // The one HTTP client every web test uses.
mod web_closure; // Closing and reopening case files (issue 16).
mod web_erasure; // Erasing personal data and the retention command (issue 16).
mod web_follow_ups; // Follow-up tickets (issue 5).
mod web_hubs; // Station hubs on the coordinators' pages (issue 15).
mod web_quarantine; // Refused changes and drifted clocks (issue 12).
mod web_roster; // Roster import (issue 5).
mod web_stats;
mod world;
