import Common
import Foundation
import Testing

/// Latency on a device over SSH (issue 28): a real OpenSSH server on a loopback port, with a
/// throw-away host key and user key, stands in for the device; its PruneCheck is this build,
/// behind a wrapper that logs the command it ran.
@Suite(.serialized) struct DeviceLatencyTests {
    /// A running sshd in `dir` on `port`, logging commands to `dir/commands.log`.
    struct Device {
        let dir: String
        let port: Int
        var pid: Int32 { Int32((try? String(contentsOfFile: "\(dir)/sshd.pid", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0 }

        static func start() throws -> Device {
            let sshd = "/usr/sbin/sshd"
            try #require(FileManager.default.isExecutableFile(atPath: sshd), "openssh-server is missing: `make setup` installs it")
            let dir = try scratchFolder("prunecheck-device")
            for key in ["hostkey", "userkey", "otherkey"] {
                try run("/usr/bin/env", ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "\(dir)/\(key)"])
            }
            try FileManager.default.copyItem(atPath: "\(dir)/userkey.pub", toPath: "\(dir)/authorized_keys")
            try FileManager.default.createDirectory(atPath: "\(dir)/remote-tmp", withIntermediateDirectories: true)
            if getuid() == 0 { try? FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true) }
            try """
                #!/bin/sh
                echo "$*" >> \(dir)/commands.log
                exec \(Repo.binary) "$@"
                """.write(toFile: "\(dir)/remote-prunecheck", atomically: true, encoding: .utf8)
            chmod("\(dir)/remote-prunecheck", 0o755)
            let port = 20000 + Int(getpid() % 20000)
            try """
                Port \(port)
                ListenAddress 127.0.0.1
                HostKey \(dir)/hostkey
                AuthorizedKeysFile \(dir)/authorized_keys
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                PermitRootLogin prohibit-password
                StrictModes no
                UsePAM no
                PidFile \(dir)/sshd.pid
                SetEnv TMPDIR=\(dir)/remote-tmp
                Subsystem sftp /usr/lib/openssh/sftp-server
                LogLevel VERBOSE
                """.write(toFile: "\(dir)/sshd_config", atomically: true, encoding: .utf8)
            let hostKey = try String(contentsOfFile: "\(dir)/hostkey.pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
            try "[127.0.0.1]:\(port) \(hostKey)\n".write(toFile: "\(dir)/known_hosts", atomically: true, encoding: .utf8)
            let otherKey = try String(contentsOfFile: "\(dir)/otherkey.pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
            try "[127.0.0.1]:\(port) \(otherKey)\n".write(toFile: "\(dir)/wrong_known_hosts", atomically: true, encoding: .utf8)
            let started = try run(sshd, ["-f", "\(dir)/sshd_config", "-E", "\(dir)/sshd.log"])
            try #require(started.status == 0, "sshd did not start: \(started.stderr)")
            for _ in 0..<50 where (try? run("/usr/bin/env", ["ssh", "-o", "BatchMode=yes", "-o", "UserKnownHostsFile=\(dir)/known_hosts", "-i", "\(dir)/userkey",
                                                             "-p", "\(port)", "\(NSUserName())@127.0.0.1", "true"]).status) != 0 {
                usleep(100_000)
            }
            return Device(dir: dir, port: port)
        }

        func stop() {
            if pid > 0 { kill(pid, SIGTERM) }
            usleep(300_000)
        }
    }

    func config(_ device: Device, extra: String = "", target: String? = nil) -> String {
        """
        version: 1
        defaults:
          latency:
            batch_sizes: [1, 8]
            warmup: 2
            min_runs: 5
            max_seconds: 0.2
            target: '\(target ?? "ssh://\(NSUserName())@127.0.0.1:\(device.port)")'
            identity_file: \(device.dir)/userkey
            known_hosts: \(device.dir)/known_hosts
            remote_command: \(device.dir)/remote-prunecheck
            target_timeout_s: 60
        \(extra)
          tolerances: {accuracy: 0.005, latency_p50: 0.5}
        models:
          - name: digits
            model: examples/models/mlp_digits.safetensors
            architecture: examples/models/mlp_digits.json
            data: {file: examples/data/digits.npz, train: [x_train, y_train], eval: [x_test, y_test]}
            prune: {method: magnitude, sparsity: 0.5, finetune: {epochs: 1, batch_size: 64, lr: 0.05}}
        """
    }

    func repository(_ device: Device, extra: String = "") throws -> String {
        let dir = try scratchFolder("prunecheck-device-repo")
        try FileManager.default.createDirectory(atPath: "\(dir)/examples/models", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(dir)/examples/data", withIntermediateDirectories: true)
        for f in ["examples/models/mlp_digits.safetensors", "examples/models/mlp_digits.json", "examples/data/digits.npz"] {
            try FileManager.default.copyItem(atPath: Repo.path(f), toPath: "\(dir)/\(f)")
        }
        try config(device, extra: extra).write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        try git(["init", "-q"], in: dir)
        return dir
    }

    func remoteLeftovers(_ device: Device) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: "\(device.dir)/remote-tmp")) ?? ["(unreadable)"]
    }

    @Test func aCheckTimesTheModelOnTheDeviceAndNamesIt() throws {
        let device = try Device.start()
        defer { device.stop(); try? FileManager.default.removeItem(atPath: device.dir) }
        let dir = try repository(device)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        let update = try WorkflowTests.prunecheck(["baseline", "update"], in: dir)
        #expect(update.status == 0, "\(update.stdout)\(update.stderr)")
        let log = try String(contentsOfFile: "\(device.dir)/commands.log", encoding: .utf8)
        #expect(log.contains("latency --model") && log.contains("--json"), "the device did not run `prunecheck latency`: \(log)")
        let baseline = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/baselines/digits.json"))))
        #expect(baseline["recorded"]?["latency_devices"]?[""]?.string?.contains("cores") == true, "\(baseline.rendered())")
        #expect(baseline["metrics"]?["latency_p50@b8"]?.double != nil)
        try git(["add", "-A"], in: dir)
        try git(["commit", "-qm", "Baselines measured on the device"], in: dir)

        // A worse recipe: paired timing sends both models to the device.
        try config(device).replacingOccurrences(of: "sparsity: 0.5", with: "sparsity: 0.6").write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        let check = try WorkflowTests.prunecheck(["check", "--junit", "r.xml", "--markdown", "r.md", "--json", "r.json"], in: dir)
        #expect([0, 1].contains(check.status), "\(check.stdout)\(check.stderr)")
        #expect(try String(contentsOfFile: "\(device.dir)/commands.log", encoding: .utf8).contains("--paired-with"))
        let host = ProcessInfo.processInfo.hostName
        for report in ["r.xml", "r.md", "r.json"] {
            let text = try String(contentsOfFile: "\(dir)/\(report)", encoding: .utf8)
            #expect(text.contains("\(NSUserName())@\(host)"), "\(report) does not name the device")
        }
        #expect(try xmllintValidate("\(dir)/r.xml", schema: WorkflowTests.schema).status == 0)
        #expect(remoteLeftovers(device).isEmpty, "left on the device: \(remoteLeftovers(device))")

        // Named targets: one device, this machine; metrics by target, each its own tolerance.
        try config(device, target: "local").replacingOccurrences(of: "    target: 'local'\n",
                with: "    targets: {edge: 'ssh://\(NSUserName())@127.0.0.1:\(device.port)', server: local}\n")
            .replacingOccurrences(of: "latency_p50: 0.5}", with: "latency_p50: 0.5, \"latency_p50[edge]\": 0.8}")
            .write(toFile: "\(dir)/targets.yml", atomically: true, encoding: .utf8)
        let named = try WorkflowTests.prunecheck(["check", "-c", "targets.yml", "--json", "t.json"], in: dir)
        let t = try String(contentsOfFile: "\(dir)/t.json", encoding: .utf8)
        #expect(t.contains("latency_p50@b1[edge]") && t.contains("latency_p50@b8[server]"), "\(named.stdout)")
        #expect(t.contains("0.8"), "latency_p50[edge] has its own tolerance")

        // Without paired timing, a device's timings compare only with a baseline from that device.
        let unpaired = config(device).replacingOccurrences(of: "defaults:\n", with: "defaults:\n  latency_gate: normalized\n")
        try unpaired.write(toFile: "\(dir)/unpaired.yml", atomically: true, encoding: .utf8)
        let same = try WorkflowTests.prunecheck(["check", "-c", "unpaired.yml", "--no-cache", "--json", "u.json"], in: dir)
        #expect(same.status == 0, "\(same.stdout)\(same.stderr)")
        let recorded = try String(contentsOfFile: "\(dir)/baselines/digits.json", encoding: .utf8)
        let moved = recorded.replacingOccurrences(of: "\"\": \"\(NSUserName())@", with: "\"\": \"pi@edge-7 (Cortex-A76, 4 cores) was ")
        #expect(moved != recorded, "the baseline names its device")
        try moved.write(toFile: "\(dir)/baselines/digits.json", atomically: true, encoding: .utf8)
        let other = try WorkflowTests.prunecheck(["check", "-c", "unpaired.yml", "--no-cache", "--json", "o.json"], in: dir)
        let o = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/o.json"))))
        var p50: JSONValue?
        if case .array(let models)? = o["models"], case .array(let items)? = models.first?["metrics"] {
            p50 = items.first { $0["name"]?.string == "latency_p50@b1" }
        }
        #expect(p50?["status"]?.string == "skipped" && p50?["note"]?.string?.contains("pi@edge-7") == true, "\(other.stdout)")
        try recorded.write(toFile: "\(dir)/baselines/digits.json", atomically: true, encoding: .utf8)

        // Host keys are checked, never accepted.
        try config(device).replacingOccurrences(of: "\(device.dir)/known_hosts", with: "\(device.dir)/wrong_known_hosts")
            .write(toFile: "\(dir)/wrong.yml", atomically: true, encoding: .utf8)
        let wrong = try WorkflowTests.prunecheck(["check", "-c", "wrong.yml", "--no-cache"], in: dir)
        #expect(wrong.status == 2 && wrong.stderr.contains("host key"), "\(wrong.stderr)")
        // No PruneCheck on the device.
        try config(device).replacingOccurrences(of: "remote_command: \(device.dir)/remote-prunecheck", with: "remote_command: \(device.dir)/absent")
            .write(toFile: "\(dir)/absent.yml", atomically: true, encoding: .utf8)
        let absent = try WorkflowTests.prunecheck(["check", "-c", "absent.yml", "--no-cache"], in: dir)
        #expect(absent.status == 2 && absent.stderr.contains("not found on the device"), "\(absent.stderr)")
        // A key the device does not accept.
        try config(device).replacingOccurrences(of: "identity_file: \(device.dir)/userkey", with: "identity_file: \(device.dir)/otherkey")
            .write(toFile: "\(dir)/auth.yml", atomically: true, encoding: .utf8)
        let auth = try WorkflowTests.prunecheck(["check", "-c", "auth.yml", "--no-cache"], in: dir)
        #expect(auth.status == 2 && auth.stderr.contains("authentication failed"), "\(auth.stderr)")
        // A device that never answers: stopped at target_timeout_s, and its folder still removed.
        try "#!/bin/sh\ncase \"$1\" in --version) exec \(Repo.binary) --version ;; esac\nsleep 60\n"
            .write(toFile: "\(device.dir)/slow-prunecheck", atomically: true, encoding: .utf8)
        chmod("\(device.dir)/slow-prunecheck", 0o755)
        try config(device).replacingOccurrences(of: "remote_command: \(device.dir)/remote-prunecheck", with: "remote_command: \(device.dir)/slow-prunecheck")
            .replacingOccurrences(of: "target_timeout_s: 60", with: "target_timeout_s: 3")
            .write(toFile: "\(dir)/slow.yml", atomically: true, encoding: .utf8)
        let started = Date()
        let slow = try WorkflowTests.prunecheck(["check", "-c", "slow.yml", "--no-cache"], in: dir)
        #expect(slow.status == 2 && slow.stderr.contains("no result within 3 s (latency.target_timeout_s)"), "\(slow.stderr)")
        #expect(Date().timeIntervalSince(started) < 40, "the timeout did not stop the measurement")
        #expect(remoteLeftovers(device).isEmpty, "left on the device: \(remoteLeftovers(device))")

        // A stopped device: exit 2 naming the target, or with on_unreachable: skip, skipped timings.
        device.stop()
        let down = try WorkflowTests.prunecheck(["check", "--no-cache"], in: dir)
        #expect(down.status == 2 && down.stderr.contains("latency target ssh://") && down.stderr.contains("unreachable"), "\(down.stderr)")
        try config(device, extra: "    on_unreachable: skip").replacingOccurrences(of: "sparsity: 0.5", with: "sparsity: 0.6")
            .write(toFile: "\(dir)/skip.yml", atomically: true, encoding: .utf8)
        let skipped = try WorkflowTests.prunecheck(["check", "-c", "skip.yml", "--no-cache", "--junit", "s.xml"], in: dir)
        #expect([0, 1].contains(skipped.status), "\(skipped.stdout)\(skipped.stderr)")
        let junit = try String(contentsOfFile: "\(dir)/s.xml", encoding: .utf8)
        #expect(junit.contains("<skipped") && junit.contains("unreachable"), "\(junit)")
    }
}
