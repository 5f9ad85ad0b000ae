"""The phone library through its generated Python bindings, against the real server.

Run by scripts/test, which builds the server and the library, generates the bindings
and sets LINLI_BINDINGS_DIR and LINLI_SERVER_BIN. Without them these tests fail: they
never skip.
"""

import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request


def _required(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: run these tests through scripts/test, which builds "
            "the library, generates its Python bindings and builds the server"
        )
    return value


sys.path.insert(0, _required("LINLI_BINDINGS_DIR"))
import mobile_ffi as linli  # noqa: E402

SERVER_BIN = _required("LINLI_SERVER_BIN")
SHANGHAI = 480  # minutes east of UTC
_logins = itertools.count()


def now_ms():
    return int(time.time() * 1000)


class Server:
    """The server binary on 127.0.0.1:0 over a SQLite file in a temporary folder."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="linli-server-")
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        self.process = subprocess.Popen(
            [SERVER_BIN, "--data-dir", self.dir, "--bind", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.base = None
        self.admin = None
        deadline = time.monotonic() + 60
        while self.admin is None:
            line = self.process.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start; see " + self.log.name)
            listening = re.search(r"listening on (http://\S+)", line)
            if listening:
                self.base = listening.group(1)
            first = re.search(r'sign in as "(.+?)" with the one-time password (\S+)', line)
            if first:
                self.admin = (first.group(1), first.group(2))

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process.stdout.close()
        self.log.close()

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def call(self, method, path, token=None, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, (json.loads(raw) if raw else None)

    def expect(self, status, method, path, token=None, body=None):
        got, answer = self.call(method, path, token, body)
        if got != status:
            raise AssertionError(f"{method} {path}: {got} {answer}")
        return answer


class World:
    """A district with a station and a coordinator, set up over the API."""

    def __init__(self):
        self.server = Server()
        s = self.server
        login, password = s.admin
        admin = s.expect(200, "POST", "/api/v1/login", body={"login": login, "password": password})[
            "access_token"
        ]
        district = s.expect(201, "POST", "/api/v1/districts", admin, {"name": "彭浦镇"})["id"]
        self.station = s.expect(
            201, "POST", "/api/v1/stations", admin, {"name": "华沙六村党群服务站", "district": district}
        )["id"]
        self.coordinator = s.expect(
            201,
            "POST",
            "/api/v1/users",
            admin,
            {
                "login": "coordinator",
                "display_name": "李协调",
                "role": "coordinator",
                "district": district,
                "password": "coordinator's password",
            },
        )["id"]
        self.token = s.expect(
            200,
            "POST",
            "/api/v1/login",
            body={"login": "coordinator", "password": "coordinator's password"},
        )["access_token"]
        self.folders = []

    def volunteer(self):
        login = f"volunteer{next(_logins)}"
        return self.server.expect(
            201,
            "POST",
            "/api/v1/users",
            self.token,
            {"login": login, "display_name": login, "role": "volunteer", "stations": []},
        )["id"]

    def phone(self, user):
        """A phone enrolled for `user`: its client, folder and key."""
        folder = tempfile.mkdtemp(prefix="linli-phone-")
        self.folders.append(folder)
        key = secrets.token_bytes(32)
        client = linli.LinliClient(folder, key)
        code = self.server.expect(201, "POST", "/api/v1/enrolment-codes", self.token, {"user": user})[
            "code"
        ]
        client.enrol(self.server.base, code, "python phone")
        return client, folder, key

    def assign(self, volunteer, resident):
        self.server.expect(204, "PUT", f"/api/v1/volunteers/{volunteer}/residents/{resident}", self.token)

    def unassign(self, volunteer, resident):
        self.server.expect(204, "DELETE", f"/api/v1/volunteers/{volunteer}/residents/{resident}", self.token)

    def revoke(self, device):
        self.server.expect(204, "POST", f"/api/v1/devices/{device}/revoke", self.token)

    def remove(self):
        self.server.remove()
        for f in self.folders:
            shutil.rmtree(f, ignore_errors=True)


def profile(name):
    return linli.ProfileRecord(
        name=name,
        address="华沙六村 12 号 301",
        phone="",
        birth_year=1936,
        living_situation=linli.LivingSituation.ALONE,
        emergency_contact="",
        needs="",
        risk_level=linli.RiskLevel.HIGH,
        visit_every_days=7,
    )


def visit(notes, project):
    now = now_ms()
    return linli.VisitInput(
        project=project,
        unit=None,
        started_at=now - 3_600_000,
        ended_at=now - 1_800_000,
        services=[],
        condition=linli.ConditionRecord(
            wellbeing=linli.Wellbeing.FAIR,
            systolic=150,
            diastolic=95,
            blood_sugar_dmmol=None,
            remarks="头晕",
        ),
        hazards=[],
        notes=notes,
        follow_up_needed=True,
    )


def sync(client):
    return client.sync(linli.CancelToken())


class PhoneStories(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = World()
        cls.coordinator, _, _ = cls.w.phone(cls.w.coordinator)
        cls.project = cls.coordinator.add_catalog_entry(
            linli.CatalogKind.PROJECT, "安守晚晴天", "Safe at home", None
        )
        sync(cls.coordinator)

    @classmethod
    def tearDownClass(cls):
        cls.w.remove()

    def resident(self, name):
        resident = self.coordinator.register_resident(self.w.station, profile(name))
        outcome = sync(self.coordinator)
        self.assertIn(resident, outcome.receipted)
        return resident

    def test_two_phones_log_offline_and_both_see_both_visits(self):
        resident = self.resident("王阿婆")
        phones = []
        for _ in range(2):
            user = self.w.volunteer()
            self.w.assign(user, resident)
            phone, _, _ = self.w.phone(user)
            self.assertTrue(sync(phone).complete)
            self.assertEqual([r.name for r in phone.residents()], ["王阿婆"])
            due = phone.due_visits(now_ms(), SHANGHAI)
            self.assertEqual([(d.status, d.resident.id) for d in due], [(linli.DueStatus.NEVER_VISITED, resident)])
            self.assertEqual([p.name for p in phone.catalog().projects], ["安守晚晴天"])
            phones.append(phone)
        a, b = phones
        va = a.log_visit(resident, visit("读报", self.project))
        vb = b.log_visit(resident, visit("检查插线板", self.project))
        for phone, v in ((a, va), (b, vb)):
            status = phone.sync_status()
            self.assertEqual(status.pending_changes, 1)
            self.assertEqual([u.visit_id for u in status.unreceipted_visits], [v])
            self.assertEqual(phone.due_visits(now_ms(), SHANGHAI), [])
        self.assertEqual(sync(a).receipted, [resident])
        sync(b)
        sync(a)
        for phone in (a, b):
            detail = phone.resident(resident)
            self.assertEqual(sorted(v.id for v in detail.visits), sorted([va, vb]))
            self.assertTrue(all(v.receipted for v in detail.visits))
            self.assertEqual(phone.sync_status().pending_changes, 0)

    def test_a_coordinator_review_reaches_the_phone(self):
        resident = self.resident("李老伯")
        user = self.w.volunteer()
        self.w.assign(user, resident)
        phone, _, _ = self.w.phone(user)
        sync(phone)
        v = phone.log_visit(resident, visit("量血压 150/95", self.project))
        with self.assertRaises(linli.LinliError.NotAllowed) as refused:
            phone.review_visit(resident, v, linli.ReviewStatus.APPROVED, "好")
        self.assertIn("(role_not_allowed)", str(refused.exception))
        sync(phone)
        sync(self.coordinator)
        self.coordinator.review_visit(resident, v, linli.ReviewStatus.NEEDS_ATTENTION, "血压偏高，请复测")
        sync(self.coordinator)
        sync(phone)
        reviews = phone.feedback().reviews
        self.assertEqual(len(reviews), 1)
        self.assertEqual(reviews[0].visit_id, v)
        self.assertEqual(reviews[0].review.status, linli.ReviewStatus.NEEDS_ATTENTION)
        self.assertEqual(reviews[0].review.comment, "血压偏高，请复测")
        self.assertEqual(reviews[0].review.reviewer, self.w.coordinator)

    def test_a_refused_visit_stays_listed_with_its_reason(self):
        resident = self.resident("赵奶奶")
        user = self.w.volunteer()
        self.w.assign(user, resident)
        phone, _, _ = self.w.phone(user)
        sync(phone)
        phone.log_visit(resident, visit("离线记录的走访", self.project))
        self.w.unassign(user, resident)
        outcome = sync(phone)
        self.assertEqual([r.code for r in outcome.rejections], ["out_of_scope"])
        self.assertEqual(phone.sync_status().refused, 1)
        [refused] = phone.refused_changes()
        self.assertEqual((refused.resident_id, refused.resident_name), (resident, "赵奶奶"))
        self.assertEqual([v.notes for v in refused.visits], ["离线记录的走访"])
        self.assertEqual(refused.code, "out_of_scope")
        self.assertIsNone(refused.dismissed)
        with self.assertRaises(linli.LinliError.AwaitingDecision):
            phone.acknowledge_refused(refused.quarantine)
        self.assertEqual(len(phone.refused_changes()), 1)

    def test_a_revoked_phone_is_purged(self):
        resident = self.resident("张阿姨")
        user = self.w.volunteer()
        self.w.assign(user, resident)
        phone, folder, key = self.w.phone(user)
        sync(phone)
        phone.log_visit(resident, visit("最后一次", self.project))
        self.w.revoke(phone.identity().device_id)
        with self.assertRaises(linli.LinliError.Revoked):
            sync(phone)
        self.assertIsNone(phone.identity())
        with self.assertRaises(linli.LinliError.NotEnrolled):
            phone.residents()
        del phone
        reopened = linli.LinliClient(folder, key)
        self.assertIsNone(reopened.identity())
        with open(os.path.join(folder, "linli-phone.db"), "rb") as f:
            self.assertNotIn("张阿姨".encode(), f.read())

    def test_a_wrong_key_is_refused(self):
        user = self.w.volunteer()
        phone, folder, key = self.w.phone(user)
        del phone
        path = os.path.join(folder, "linli-phone.db")
        with open(path, "rb") as f:
            before = f.read()
        with self.assertRaises(linli.LinliError.WrongKey) as wrong:
            linli.LinliClient(folder, bytes(32))
        self.assertEqual(str(wrong.exception), "the key does not open this store; nothing was read or written")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)
        self.assertEqual(linli.LinliClient(folder, key).identity().user_id, user)

    def test_an_unreachable_server_gives_a_retryable_error(self):
        folder = tempfile.mkdtemp(prefix="linli-phone-")
        self.w.folders.append(folder)
        phone = linli.LinliClient(folder, secrets.token_bytes(32))
        closed = Server()
        base = closed.base
        closed.remove()
        with self.assertRaises(linli.LinliError.Network) as error:
            phone.enrol(base, "123456", "python phone")
        self.assertTrue(str(error.exception).startswith("the server could not be reached; try again later"))
        self.assertIsNone(phone.identity())

    def test_a_station_hub_holds_the_visit_until_the_district_server_does(self):
        resident = self.resident("钱老伯")
        user = self.w.volunteer()
        self.w.assign(user, resident)
        phone, _, _ = self.w.phone(user)
        sync(phone)
        # A new volunteer's code for the station's hub, which the hub learns with its
        # roster.
        newcomer = self.w.volunteer()
        self.w.assign(newcomer, resident)
        newcomer_code = self.w.server.expect(
            201,
            "POST",
            "/api/v1/enrolment-codes",
            self.w.token,
            {"user": newcomer, "station": self.w.station},
        )["code"]
        code = self.w.server.expect(
            201, "POST", "/api/v1/hub-codes", self.w.token, {"station": self.w.station}
        )["code"]
        hub_dir = tempfile.mkdtemp(prefix="linli-hub-")
        self.w.folders.append(hub_dir)
        # The README's two commands.
        subprocess.run(
            [SERVER_BIN, "--data-dir", hub_dir, "hub", "enrol", "--upstream", self.w.server.base, "--code", code],
            check=True,
            capture_output=True,
        )
        with open(os.path.join(hub_dir, "hub.log"), "wb") as log:
            hub = subprocess.Popen(
                [SERVER_BIN, "--data-dir", hub_dir, "--bind", "127.0.0.1:0", "hub", "--every-secs", "1"],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        try:
            address = re.search(r"listening on (http://[^,\s]+)", hub.stdout.readline()).group(1)

            def at_hub():
                return phone.sync_at_hub(address, linli.CancelToken())

            # Until the hub has mirrored the station it leaves the resident to the
            # district server, and the visit waits on the phone.
            v = phone.log_visit(resident, visit("在服务站同步", self.project))
            deadline = time.monotonic() + 60
            while True:
                try:
                    outcome = at_hub()
                except linli.LinliError.BadCredentials:
                    # The hub has not fetched its roster yet: it does not know the phone.
                    self.assertLess(time.monotonic(), deadline, "the hub never learned of the phone")
                    time.sleep(0.2)
                    continue
                if outcome.receipted == [resident]:
                    break
                self.assertEqual([r.code for r in outcome.rejections], ["not_here"])
                self.assertLess(time.monotonic(), deadline, "the hub never mirrored the station")
                time.sleep(0.2)
            self.assertIsNotNone(outcome.hub)
            status = phone.sync_status()
            self.assertEqual(status.pending_changes, 0)
            self.assertEqual([h.visit_id for h in status.held_at_station], [v])
            # The hub hands the visit on; at its next contact the phone hears that the
            # district server holds it.
            while resident not in at_hub().held_by_district:
                self.assertLess(time.monotonic(), deadline, "the hub never forwarded the visit")
                time.sleep(0.2)
            self.assertEqual(phone.sync_status().held_at_station, [])
            sync(self.coordinator)
            self.assertIn(v, [x.id for x in self.coordinator.resident(resident).visits])

            # The newcomer's phone enrols at the hub's address: the same call as at the
            # district server, and it syncs with the district server afterwards.
            folder = tempfile.mkdtemp(prefix="linli-phone-")
            self.w.folders.append(folder)
            newcomer_phone = linli.LinliClient(folder, secrets.token_bytes(32))
            identity = newcomer_phone.enrol(address, newcomer_code, "新志愿者的手机")
            self.assertEqual(identity.user_id, newcomer)
            newcomer_phone.sync_at_hub(address, linli.CancelToken())
            w = newcomer_phone.log_visit(resident, visit("第一次探访", self.project))
            self.assertEqual(newcomer_phone.sync_at_hub(address, linli.CancelToken()).receipted, [resident])
            outcome = sync(newcomer_phone)
            self.assertIsNone(outcome.hub)
            sync(self.coordinator)
            self.assertIn(w, [x.id for x in self.coordinator.resident(resident).visits])
        finally:
            hub.terminate()
            self.assertEqual(hub.wait(timeout=30), 0)
            hub.stdout.close()


if __name__ == "__main__":
    unittest.main()
