import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A model directory written under a temporary name beside its destination and moved into place by
/// one rename, so readers see either the old destination or the complete new one, never a mix.
///
/// Files are written into `temporaryPath` (`path(_:)`, `write`, `writeJSON`, `copyFile`, or any
/// writer given `path(name)`); `commit()` fsyncs every file and directory of it, renames it onto
/// `destination` (an existing destination is swapped out by that rename, then removed) and fsyncs
/// the parent. Until then the temporary is registered with `InterruptCleanup`, and `abort()`, a
/// thrown error that drops the writer, or deinit removes it.
public final class AtomicDirectory {
    /// Where the directory appears on `commit()`.
    public let destination: String
    /// The directory written until `commit()`: `destination + ".partial-<pid>"`, beside it.
    public let temporaryPath: String
    private var finished = false

    /// The temporary directory a process writes for `destination`.
    public static func temporaryPath(for destination: String) -> String {
        standardized(destination) + ".partial-\(getpid())"
    }

    /// Creates the temporary directory (and missing parents), after removing temporaries that
    /// killed runs left for the same destination.
    public init(destination: String) throws {
        self.destination = standardized(destination)
        temporaryPath = Self.temporaryPath(for: destination)
        removeStaleTemporaries(of: self.destination, marker: ".partial-")
        InterruptCleanup.register(temporaryPath)
        let fm = FileManager.default
        // A leftover of an earlier process with this pid: it cannot be running any more.
        try? fm.removeItem(atPath: temporaryPath)
        do { try fm.createDirectory(atPath: temporaryPath, withIntermediateDirectories: true) } catch {
            InterruptCleanup.unregister(temporaryPath)
            throw FormatError.writeFailed(
                path: self.destination, reason: "cannot create \(temporaryPath): \(error.localizedDescription)")
        }
    }

    deinit { abort() }

    /// The path of `name` inside the temporary directory.
    public func path(_ name: String) -> String { temporaryPath + "/" + name }

    /// Writes `data` as the file `name` (synced by `commit()`).
    public func write(_ data: Data, to name: String) throws {
        do { try data.write(to: URL(fileURLWithPath: path(name))) } catch {
            throw FormatError.writeFailed(path: destination + "/" + name, reason: error.localizedDescription)
        }
    }

    /// Writes a JSON object (sorted keys, pretty-printed) as the file `name`.
    public func writeJSON(_ object: Any, to name: String) throws {
        try write(try jsonData(object, path: destination + "/" + name), to: name)
    }

    /// Copies the file at `source` as the file `name`.
    public func copyFile(from source: String, to name: String) throws {
        do { try FileManager.default.copyItem(atPath: source, toPath: path(name)) } catch {
            throw FormatError.writeFailed(
                path: destination + "/" + name, reason: "copying \(source): \(error.localizedDescription)")
        }
    }

    /// Syncs every file and directory written, then moves the directory onto `destination` in one
    /// rename and syncs the parent directory.
    public func commit() throws {
        guard !finished else {
            throw FormatError.writeFailed(path: destination, reason: "the directory was already committed or aborted")
        }
        do {
            try syncTree(temporaryPath)
            try moveIntoPlace(temporaryPath, destination)
            try syncDirectory(parentDirectory(of: destination))
        } catch {
            abort()
            throw error
        }
        finished = true
        InterruptCleanup.unregister(temporaryPath)
    }

    /// Removes the temporary directory (nothing once committed).
    public func abort() {
        guard !finished else { return }
        finished = true
        try? FileManager.default.removeItem(atPath: temporaryPath)
        InterruptCleanup.unregister(temporaryPath)
    }
}

/// Single files written as `AtomicDirectory` writes directories: a temporary file beside the
/// destination, fsynced, renamed over it (replacing an existing file in that step), the directory
/// fsynced.
public enum AtomicFile {
    /// The temporary file a process writes for `path`.
    public static func temporaryPath(for path: String) -> String { path + ".tmp-\(getpid())" }

    /// Writes `data` to `path`.
    public static func write(_ data: Data, to path: String) throws {
        let tmp = temporaryPath(for: path)
        InterruptCleanup.register(tmp)
        defer { InterruptCleanup.unregister(tmp) }
        try writeSynced(data, temporary: tmp, reportAs: path)
        try commit(temporary: tmp, to: path)
    }

    /// Writes `data` to the file `temporary` and fsyncs it (removed again on failure).
    static func writeSynced(_ data: Data, temporary: String, reportAs path: String) throws {
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw FormatError.writeFailed(path: path, reason: "cannot create \(temporary): \(lastError())") }
        do {
            try data.withUnsafeBytes { try writeFully(fd, $0, path: path) }
            if fsync(fd) != 0 { throw FormatError.writeFailed(path: path, reason: "fsync: \(lastError())") }
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
    }

    /// Writes `text` as UTF-8 to `path`.
    public static func write(_ text: String, to path: String) throws { try write(Data(text.utf8), to: path) }

    /// Writes a JSON object (sorted keys, pretty-printed) to `path`.
    public static func writeJSON(_ object: Any, to path: String) throws {
        try write(try jsonData(object, path: path), to: path)
    }

    /// Renames a finished (fsynced) temporary file onto `path` and syncs the directory so the rename
    /// survives a crash; the temporary is removed if the rename fails.
    public static func commit(temporary: String, to path: String) throws {
        if rename(temporary, path) != 0 {
            let r = lastError()
            unlink(temporary)
            throw FormatError.writeFailed(path: path, reason: "rename: \(r)")
        }
        try syncDirectory(parentDirectory(of: path))
    }
}

/// Writes a JSON object with sorted keys, pretty-printed, to `path` (atomically, fsynced).
public func writeJSON(_ obj: Any, to path: String) throws {
    try AtomicFile.writeJSON(obj, to: path)
}

/// Temporary outputs removed when the process gets SIGINT or SIGTERM, after which the signal's
/// default action ends the process (so its exit status says which signal it was).
public enum InterruptCleanup {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var paths: [String: Int] = [:]
    nonisolated(unsafe) private static var installed = false

    /// Removes `path` (a file or a directory tree) on SIGINT/SIGTERM until `unregister(path)`.
    /// Registrations are counted, so nested registrations of one path need as many unregisters.
    public static func register(_ path: String) {
        lock.lock()
        defer { lock.unlock() }
        paths[path, default: 0] += 1
        installHandlers()
    }

    /// Stops removing `path` on interruption.
    public static func unregister(_ path: String) {
        lock.lock()
        defer { lock.unlock() }
        if let n = paths[path] { paths[path] = n > 1 ? n - 1 : nil }
    }

    /// The paths currently registered.
    public static var registered: [String] {
        lock.lock()
        defer { lock.unlock() }
        return paths.keys.sorted()
    }

    /// Removes every registered path (what an interruption does before the process ends) and
    /// returns the paths that existed.
    @discardableResult
    public static func removeAll() -> [String] {
        lock.lock()
        let list = paths.keys.sorted()
        paths = [:]
        lock.unlock()
        return list.filter { p in
            guard FileManager.default.fileExists(atPath: p) else { return false }
            try? FileManager.default.removeItem(atPath: p)
            return true
        }
    }

    /// Installs the SIGINT/SIGTERM handlers once: the handler only writes the signal number to a
    /// pipe (all a signal handler may safely do); a thread reading it does the cleanup.
    private static func installHandlers() {
        guard !installed else { return }
        installed = true
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        interruptPipeWrite = fds[1]
        let reader = fds[0]
        // A parent may have spawned us with these signals blocked (the mask is inherited): unblock
        // them on this thread (and so on the cleanup thread it starts) or they would stay pending.
        unblock([SIGINT, SIGTERM])
        let t = Thread {
            var sig: UInt8 = 0
            while read(reader, &sig, 1) != 1 {}
            InterruptCleanup.removeAll()
            let s = Int32(sig)
            // The default action ends the process with the conventional "killed by signal" status.
            signal(s, SIG_DFL)
            unblock([s])
            raise(s)
            usleep(200_000)
            _exit(128 + s)
        }
        t.name = "squeeze-interrupt-cleanup"
        t.start()
        signal(SIGINT, interruptSignalHandler)
        signal(SIGTERM, interruptSignalHandler)
    }

    private static func unblock(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}

/// The write end of `InterruptCleanup`'s pipe (a global: read from the signal handler).
nonisolated(unsafe) private var interruptPipeWrite: Int32 = -1

private func interruptSignalHandler(_ sig: Int32) {
    var b = UInt8(truncatingIfNeeded: sig)
    _ = write(interruptPipeWrite, &b, 1)
}

/// `path` without trailing slashes (so `dir/` and `dir` name one temporary).
private func standardized(_ path: String) -> String {
    var p = path
    while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
    return p
}

private func parentDirectory(of path: String) -> String {
    let d = (path as NSString).deletingLastPathComponent
    return d.isEmpty ? "." : d
}

private func lastError() -> String { String(cString: strerror(errno)) }

private func jsonData(_ object: Any, path: String) throws -> Data {
    do { return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]) } catch {
        throw FormatError.writeFailed(path: path, reason: "not serializable as JSON: \(error.localizedDescription)")
    }
}

/// Writes all of `buf` to `fd`, retrying short writes and EINTR; errors name `path`.
func writeFully(_ fd: Int32, _ buf: UnsafeRawBufferPointer, path: String) throws {
    var p = buf.baseAddress
    var left = buf.count
    while left > 0, let q = p {
        let w = write(fd, q, left)
        if w < 0 {
            if errno == EINTR { continue }
            throw FormatError.writeFailed(path: path, reason: lastError())
        }
        left -= w
        p = q + w
    }
}

/// fsyncs a file or directory.
private func syncPath(_ path: String, reportAs: String) throws {
    let fd = open(path, O_RDONLY)
    if fd < 0 { throw FormatError.writeFailed(path: reportAs, reason: "cannot open \(path) to sync: \(lastError())") }
    defer { close(fd) }
    if fsync(fd) != 0 { throw FormatError.writeFailed(path: reportAs, reason: "fsync \(path): \(lastError())") }
}

/// fsyncs a directory so the entries created or renamed in it are durable.
func syncDirectory(_ path: String) throws { try syncPath(path, reportAs: path) }

/// fsyncs every file and directory under `root`, deepest first, and `root` itself.
private func syncTree(_ root: String) throws {
    let fm = FileManager.default
    var dirs: [String] = [root]
    for rel in (fm.enumerator(atPath: root)?.allObjects as? [String]) ?? [] {
        let p = root + "/" + rel
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: p, isDirectory: &isDir) else { continue }
        if isDir.boolValue { dirs.append(p) } else { try syncPath(p, reportAs: root) }
    }
    for d in dirs.reversed() { try syncPath(d, reportAs: root) }
}

/// Moves `source` onto `destination` in one step: a rename when nothing is there, an atomic exchange
/// when something is (then the old content, now at `source`, is removed).
private func moveIntoPlace(_ source: String, _ destination: String) throws {
    var st = stat()
    guard lstat(destination, &st) == 0 else {
        if rename(source, destination) != 0 {
            throw FormatError.writeFailed(path: destination, reason: "rename: \(lastError())")
        }
        return
    }
    if exchangePaths(source, destination) {
        try? FileManager.default.removeItem(atPath: source)
        return
    }
    // No atomic exchange on this file system: the old destination is set aside (not deleted) until
    // the new one is in place, and put back if that rename fails.
    let aside = destination + ".old-\(getpid())"
    if rename(destination, aside) != 0 {
        throw FormatError.writeFailed(path: destination, reason: "rename aside: \(lastError())")
    }
    if rename(source, destination) != 0 {
        let r = lastError()
        _ = rename(aside, destination)
        throw FormatError.writeFailed(path: destination, reason: "rename: \(r)")
    }
    try? FileManager.default.removeItem(atPath: aside)
}

#if canImport(Darwin)
private func exchangePaths(_ a: String, _ b: String) -> Bool {
    renamex_np(a, b, UInt32(RENAME_SWAP)) == 0
}
#else
private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32

/// glibc's `renameat2` (2.28+), looked up at run time: the Glibc module does not export it.
private let renameat2Function: RenameAt2? = {
    guard let h = dlopen(nil, RTLD_NOW), let f = dlsym(h, "renameat2") else { return nil }
    return unsafeBitCast(f, to: RenameAt2.self)
}()

private func exchangePaths(_ a: String, _ b: String) -> Bool {
    guard let f = renameat2Function else { return false }
    let atFDCWD: Int32 = -100, renameExchange: UInt32 = 1 << 1
    return f(atFDCWD, a, atFDCWD, b, renameExchange) == 0
}
#endif

/// Removes `<path><marker><pid>` siblings whose process no longer exists (left by killed runs).
func removeStaleTemporaries(of path: String, marker: String) {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path, base = url.lastPathComponent + marker
    for f in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where f.hasPrefix(base) {
        if let pid = Int32(f.dropFirst(base.count)), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH {
            try? FileManager.default.removeItem(atPath: dir + "/" + f)
        }
    }
}
