// The phone library as an Android team meets it: the generated Kotlin bindings
// (package org.linli.phone, JNA), against the real server binary. Compiled and run by
// scripts/kotlin-story, which scripts/test (the README's test command) calls; it fails,
// never skips. The story: enrol, sync, log a visit offline, sync, a second phone sees
// it; a wrong key; the server down and back; a cancelled sync that resumes.
//
// The parts an app has (open, enrol, log, sync, what to do with each error) are the
// functions at the top; the harness (a server process, its HTTP API) is below them.

package org.linli.sample

import org.linli.phone.CancelToken
import org.linli.phone.CatalogKind
import org.linli.phone.ConditionRecord
import org.linli.phone.LinliClient
import org.linli.phone.LinliException
import org.linli.phone.ProfileRecord
import org.linli.phone.RiskLevel
import org.linli.phone.SyncOutcome
import org.linli.phone.VisitInput
import org.linli.phone.Wellbeing
import java.io.File
import java.net.ServerSocket
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.security.SecureRandom
import kotlin.system.exitProcess

// ---- What an app does -------------------------------------------------------------

/** A phone's store in its own folder, opened with a key from the keystore. */
class Phone(val folder: File, val key: ByteArray) {
    // The constructor throws LinliException.WrongKey for a key that does not open the
    // folder's store; nothing on disk changes.
    val client = LinliClient(folder.path, key)

    /**
     * One sync, as a WorkManager job would run it: every error has a class to switch
     * on and a sentence to log.
     */
    fun sync(cancel: CancelToken = CancelToken()): SyncOutcome = client.sync(cancel)
}

/** A visit as the volunteer records it: only what they filled in, the rest defaults. */
fun visitOf(project: String, notes: String): VisitInput {
    val now = System.currentTimeMillis()
    return VisitInput(
        project = project,
        startedAt = now - 3_600_000,
        endedAt = now - 1_800_000,
        condition = ConditionRecord(wellbeing = Wellbeing.GOOD, systolic = 135L, diastolic = 85L),
        notes = notes,
    )
}

// ---- The story --------------------------------------------------------------------

fun main() {
    val serverBin = System.getenv("LINLI_SERVER_BIN")
        ?: fail("LINLI_SERVER_BIN is not set: run this through scripts/kotlin-story")
    val work = Files.createTempDirectory("linli-kotlin-").toFile()
    val server = Server(File(serverBin), File(work, "server"))
    try {
        story(server, work)
        println("kotlin phone story: ok")
    } finally {
        server.stop()
        work.deleteRecursively()
    }
}

fun story(server: Server, work: File) {
    val api = server.api
    val admin = api.login(server.adminLogin, server.adminPassword)
    val district = api.post("/api/v1/districts", admin, """{"name":"彭浦镇"}""").field("id")
    val station = api.post(
        "/api/v1/stations", admin, """{"name":"华沙六村党群服务站","district":"$district"}""",
    ).field("id")
    api.post(
        "/api/v1/users", admin,
        """{"login":"coordinator","display_name":"李协调","role":"coordinator",""" +
            """"district":"$district","password":"coordinator's password"}""",
    )
    val coordinatorToken = api.login("coordinator", "coordinator's password")
    fun volunteer(login: String): String = api.post(
        "/api/v1/users", coordinatorToken,
        """{"login":"$login","display_name":"$login","role":"volunteer","stations":[]}""",
    ).field("id")
    fun enrol(user: String, name: String): Phone {
        val key = ByteArray(32).also { SecureRandom().nextBytes(it) }
        val phone = Phone(File(work, name).apply { mkdirs() }, key)
        val code = api.post("/api/v1/enrolment-codes", coordinatorToken, """{"user":"$user"}""")
            .field("code")
        val identity = phone.client.enrol(server.base, code, "kotlin $name")
        check(identity.userId == user) { "enrolled as ${identity.userId}, not $user" }
        return phone
    }

    // The coordinator's phone registers a resident and the project visits are logged under.
    val coordinatorUser = api.get("/api/v1/me", coordinatorToken).field("id")
    val coordinator = enrol(coordinatorUser, "coordinator")
    val project = coordinator.client.addCatalogEntry(CatalogKind.PROJECT, "安守晚晴天", "Safe at home", null)
    val resident = coordinator.client.registerResident(
        station,
        ProfileRecord(name = "王阿婆", address = "华沙六村 12 号 301", riskLevel = RiskLevel.HIGH, visitEveryDays = 7L),
    )
    check(resident in coordinator.sync().receipted) { "the resident was not receipted" }

    // Two volunteers' phones enrol and receive the resident.
    val volunteerA = volunteer("volunteer-a")
    val volunteerB = volunteer("volunteer-b")
    for (user in listOf(volunteerA, volunteerB)) {
        api.put("/api/v1/volunteers/$user/residents/$resident", coordinatorToken)
    }
    val a = enrol(volunteerA, "phone-a")
    val b = enrol(volunteerB, "phone-b")
    for (phone in listOf(a, b)) {
        check(phone.sync().complete) { "the first sync did not complete" }
        check(phone.client.residents().map { it.name } == listOf("王阿婆")) { "no resident on the phone" }
    }

    // Offline: phone A logs a visit; it is on disk, pending, before any network.
    val visit = a.client.logVisit(resident, visitOf(project, "读报，检查插线板"))
    val pending = a.client.syncStatus()
    check(pending.pendingChanges == 1L) { "pending ${pending.pendingChanges}" }
    check(pending.unreceiptedVisits.map { it.visitId } == listOf(visit)) { "the visit is not listed unreceipted" }

    // At the station: A syncs, the server receipts it; B syncs and sees it.
    check(a.sync().receipted == listOf(resident)) { "the visit was not receipted" }
    check(a.client.syncStatus().pendingChanges == 0L) { "still pending after the sync" }
    b.sync()
    val seen = b.client.resident(resident).visits
    check(seen.map { it.id } == listOf(visit) && seen[0].record.notes == "读报，检查插线板") {
        "phone B does not see phone A's visit: $seen"
    }
    check(seen[0].receipted) { "phone B's copy is not marked held by the server" }

    // A volunteer may not review: refused at once, with a class and a sentence.
    val refused = expect<LinliException.NotAllowed> {
        b.client.reviewVisit(resident, visit, org.linli.phone.ReviewStatus.APPROVED, "好")
    }
    check(refused.message!!.startsWith("not allowed (role_not_allowed): ")) { refused.message!! }

    // A wrong key: WrongKey with its sentence, the store untouched; the right key opens it.
    val db = File(a.folder, "linli-phone.db")
    val before = db.readBytes()
    val wrong = expect<LinliException.WrongKey> { LinliClient(a.folder.path, ByteArray(32)) }
    check(wrong.message == "the key does not open this store; nothing was read or written") { wrong.message!! }
    check(wrong.toString().endsWith(": " + wrong.message)) { "toString() lacks the message: $wrong" }
    check(db.readBytes().contentEquals(before)) { "a wrong key changed the store" }
    val badKey = expect<LinliException.BadKey> { LinliClient(a.folder.path, ByteArray(5)) }
    check(badKey.message == "the key must be 32 bytes, got 5") { badKey.message!! }

    // The server goes down: a retryable Network error, and the visit waits on the phone.
    val offline = a.client.logVisit(resident, visitOf(project, "量血压"))
    server.stop()
    val down = expect<LinliException.Network> { a.sync() }
    check(down.message!!.startsWith("the server could not be reached; try again later")) { down.message!! }
    check(a.client.syncStatus().unreceiptedVisits.map { it.visitId } == listOf(offline)) { "the visit was lost" }

    // A cancelled sync stops before its first round; the next one resumes.
    server.start()
    val cancel = CancelToken().apply { cancel() }
    val cancelled = expect<LinliException.Cancelled> { a.sync(cancel) }
    check(cancelled.message == "the sync was cancelled; what was exchanged is kept") { cancelled.message!! }
    check(a.sync().receipted == listOf(resident)) { "the visit logged while the server was down was not receipted" }
    b.sync()
    check(b.client.resident(resident).visits.map { it.id }.toSet() == setOf(visit, offline)) {
        "phone B does not see both visits"
    }

    // Errors outside a sync: not found, invalid input, already enrolled, with sentences.
    val missing = expect<LinliException.NotFound> { a.client.resident("00000000-0000-4000-8000-000000000000") }
    check(missing.message!!.endsWith("not found on this phone")) { missing.message!! }
    val invalid = expect<LinliException.InvalidInput> { a.client.resident("not an id") }
    check(invalid.message!!.startsWith("invalid input: ")) { invalid.message!! }
    val again = expect<LinliException.AlreadyEnrolled> { a.client.enrol(server.base, "000000", "again") }
    check(again.message == "this phone is already enrolled") { again.message!! }
    val used = Phone(File(work, "phone-c").apply { mkdirs() }, ByteArray(32) { 7 })
    val badCode = expect<LinliException.BadCredentials> { used.client.enrol(server.base, "000000", "c") }
    check(badCode.message!!.startsWith("the server does not accept this code or credential")) { badCode.message!! }
}

/** Runs [block], which must throw [E]; returns it. */
inline fun <reified E : LinliException> expect(block: () -> Unit): E {
    try {
        block()
    } catch (e: LinliException) {
        check(e is E) { "expected ${E::class.simpleName}, got ${e::class.simpleName}: ${e.message}" }
        check(!e.message.isNullOrBlank()) { "${e::class.simpleName} has no message" }
        return e
    }
    fail("expected ${E::class.simpleName}, but the call succeeded")
}

fun fail(message: String): Nothing {
    System.err.println("kotlin phone story FAILED: $message")
    exitProcess(1)
}

// ---- The harness: the server binary and its JSON API --------------------------------

/** The server binary on a fixed loopback port over a SQLite folder; stop and start again. */
class Server(private val bin: File, private val dataDir: File) {
    private val port = ServerSocket(0).use { it.localPort }
    val base = "http://127.0.0.1:$port"
    val api = Api(base)
    private var process: Process? = null
    lateinit var adminLogin: String
    lateinit var adminPassword: String

    init {
        dataDir.mkdirs()
        // A failed check exits the JVM at once; the server must not outlive it.
        Runtime.getRuntime().addShutdownHook(Thread { process?.destroyForcibly() })
        start()
    }

    fun start() {
        val p = ProcessBuilder(bin.path, "--data-dir", dataDir.path, "--bind", "127.0.0.1:$port")
            .redirectError(File(dataDir, "server.log"))
            .start()
        process = p
        val lines = p.inputStream.bufferedReader()
        val deadline = System.nanoTime() + 60_000_000_000
        val firstStart = !this::adminLogin.isInitialized
        var listening = false
        while (!listening || (firstStart && !this::adminLogin.isInitialized)) {
            val line = lines.readLine() ?: fail("the server stopped; see ${dataDir.path}/server.log")
            if (System.nanoTime() > deadline) fail("the server did not start in 60 s")
            if (line.contains("listening on http://")) listening = true
            Regex("""sign in as "(.+?)" with the one-time password (\S+)""").find(line)?.let {
                adminLogin = it.groupValues[1]
                adminPassword = it.groupValues[2]
            }
        }
        // Keep reading its output so the pipe never fills.
        Thread { lines.forEachLine { } }.apply { isDaemon = true }.start()
    }

    fun stop() {
        process?.let {
            it.destroy()
            it.waitFor()
        }
        process = null
    }
}

/** A few calls of the server's JSON API, for the coordinator's side of the story. */
class Api(private val base: String) {
    private val http = HttpClient.newHttpClient()

    fun login(login: String, password: String): String =
        post("/api/v1/login", null, """{"login":"$login","password":${quote(password)}}""").field("access_token")

    fun get(path: String, token: String): String = send("GET", path, token, null)

    fun post(path: String, token: String?, body: String): String = send("POST", path, token, body)

    fun put(path: String, token: String): String = send("PUT", path, token, null)

    private fun send(method: String, path: String, token: String?, body: String?): String {
        val request = HttpRequest.newBuilder(URI.create(base + path))
            .method(method, body?.let { HttpRequest.BodyPublishers.ofString(it) } ?: HttpRequest.BodyPublishers.noBody())
            .header("Content-Type", "application/json")
            .apply { token?.let { header("Authorization", "Bearer $it") } }
            .build()
        val response = http.send(request, HttpResponse.BodyHandlers.ofString())
        if (response.statusCode() !in 200..299) fail("$method $path: ${response.statusCode()} ${response.body()}")
        return response.body()
    }

    private fun quote(s: String) = "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\""
}

/** The string value of a top-level field of a JSON answer (enough for ids and tokens). */
fun String.field(name: String): String =
    Regex(""""$name"\s*:\s*"([^"]*)"""").find(this)?.groupValues?.get(1)
        ?: fail("no \"$name\" in $this")
