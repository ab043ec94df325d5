// A small driver around Apache Curator's recipes (curator-recipes 5.4), used by
// tests/interop/recipes_peer.py to run the real InterProcessMutex, LeaderLatch, LeaderSelector,
// InterProcessReadWriteLock, InterProcessSemaphoreV2, SharedCount and DistributedAtomicLong
// against the same ZooKeeper as zkwarden's recipes. Compiled and run by that helper; not part of
// the package.
//
// Every line printed is one JSON object: {"t": <CLOCK_MONOTONIC seconds>, "event": ..., ...}.
// "t" is System.nanoTime() (CLOCK_MONOTONIC on Linux, the clock of Python's time.monotonic()),
// so the test can put Java and Python events on one timeline. A failure prints
// {"event": "error", "message": ...} and exits 2.
//
// Long-running commands connect, print "ready", and read stdin: "go" starts the rounds when
// --wait-go is given; other lines are commands; end of stdin ends the process (its session
// closes, so its ephemeral nodes go). Common options: --session-ms (default 6000),
// --timeout-ms (bound on any single acquire, default 60000).
//
//   mutex CONNECT PATH --id ID --rounds N --hold-ms M --guard GUARD [--gap-ms G] [--wait-go]
//       N times: acquire InterProcessMutex(PATH); create GUARD (EPHEMERAL; NodeExists means two
//       holders: "overlap"); "acquired" {round, node, czxid, wait_ms}; hold M ms; "releasing";
//       delete GUARD; release; "released". Then "done" {acquisitions, overlaps}.
//   selector CONNECT PATH --id ID --rounds N --hold-ms M --guard GUARD [--wait-go]
//       LeaderSelector(PATH) with setId(ID) and autoRequeue(); each takeLeadership is one round
//       as for mutex ("acquired"/"releasing"/"released"); after N rounds it closes: "done".
//   latch CONNECT PATH --id ID --rounds N --hold-ms M --guard GUARD [--wait-go]
//       N times: a new LeaderLatch(PATH, ID); start; await leadership; GUARD as for mutex;
//       "acquired" {round, node, czxid}; hold; "releasing"; delete GUARD; close; "released".
//   latch CONNECT PATH --id ID [--duration-ms D]
//       One LeaderLatch(PATH, ID), started at once: "started" {node}; "isLeader"/"notLeader" as
//       its listener is told; stdin "participants" prints "participants" {participants: [{id,
//       leader}], leader, has_leadership}; "close" (or D ms, or end of stdin) closes it: "closed".
//   rwlock CONNECT PATH --id ID --mode read|write --rounds N --hold-ms M --guard-dir DIR [...]
//       N times: acquire readLock()/writeLock() of InterProcessReadWriteLock(PATH); create
//       DIR/<mode>-<id>-<round> (EPHEMERAL) and list DIR: a writer seeing any other child, or a
//       reader seeing a write-* child, is an "overlap"; "acquired" {round, holders, readers};
//       hold; "releasing"; delete; release; "released". Then "done".
//   semaphore CONNECT PATH --id ID --max N --rounds R --hold-ms M --guard-dir DIR [...]
//       R times: acquire a lease of InterProcessSemaphoreV2(PATH, N); create DIR/h-<id>-<round>
//       and list DIR: more than N children is an "overlap"; "acquired" {round, holders}; hold;
//       "releasing"; delete; return the lease; "released". Then "done" {max_holders, ...}.
//   sharedcount CONNECT PATH [--seed S]
//       SharedCount(PATH, S) started: "ready" {value, version}; "changed" {value} from its
//       listener. stdin: "get" -> "value" {value, version}; "set V" -> "set"; "snapshot" ->
//       "value" (and remembers the VersionedValue); "trySet V" -> "trySet" {ok} with the
//       snapshot; "increment K" -> K compare-and-set increments, "incremented" {count, retries}.
//   atomiclong CONNECT PATH
//       DistributedAtomicLong(PATH). stdin: "get", "increment", "add D", "cas E N",
//       "set V" (forceSet), "initialize V", each -> "result" {op, succeeded, pre, post};
//       "increment K" -> "incremented" {count, failures} after K increments.
//   barrier CONNECT PATH
//       DistributedBarrier(PATH). stdin: "set" -> "set"; "remove" -> "removed"; "wait MS" ->
//       waitOnBarrier(MS) in a thread of its own, then "passed" {ok}.
//   doublebarrier CONNECT PATH --id ID --members N [--hold-ms M] [--wait-go]
//       DistributedDoubleBarrier(PATH, N): "entering"; enter(timeout) -> "entered" {ok}; hold M
//       ms; "leaving"; leave(timeout) -> "left" {ok}; "done".
//   participants CONNECT PATH --kind latch|selector
//       Prints "participants" {participants: [{id, leader}]} as Curator's getParticipants() sees
//       them, without taking part.

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.barriers.DistributedBarrier;
import org.apache.curator.framework.recipes.barriers.DistributedDoubleBarrier;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderLatchListener;
import org.apache.curator.framework.recipes.leader.LeaderSelector;
import org.apache.curator.framework.recipes.leader.LeaderSelectorListenerAdapter;
import org.apache.curator.framework.recipes.leader.Participant;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessReadWriteLock;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.framework.recipes.shared.SharedCountListener;
import org.apache.curator.framework.recipes.shared.SharedCountReader;
import org.apache.curator.framework.recipes.shared.VersionedValue;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.retry.RetryNTimes;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.data.Stat;

public final class RecipeTool {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final PrintStream OUT =
            new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);
    private static final String EOF = "\u0000EOF";

    private static final BlockingQueue<String> COMMANDS = new LinkedBlockingQueue<>();
    private static final CountDownLatch GO = new CountDownLatch(1);
    private static volatile boolean stdinClosed;

    private RecipeTool() {}

    /** InterProcessMutex with its (protected) lock node path readable, for the fencing token. */
    static final class Mutex extends InterProcessMutex {
        Mutex(CuratorFramework client, String path) {
            super(client, path);
        }

        String lockPath() {
            return getLockPath();
        }
    }

    // --- output --------------------------------------------------------------------------

    static synchronized void emit(String event, Object... pairs) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("t", System.nanoTime() / 1e9);
        out.put("event", event);
        for (int i = 0; i + 1 < pairs.length; i += 2) {
            out.put((String) pairs[i], pairs[i + 1]);
        }
        try {
            OUT.println(JSON.writeValueAsString(out));
        } catch (Exception e) {
            OUT.println("{\"event\": \"error\", \"message\": \"unprintable event " + event + "\"}");
        }
    }

    static void fail(String message) {
        emit("error", "message", message);
        OUT.flush();
        System.exit(2);
    }

    // --- arguments -----------------------------------------------------------------------

    static final class Args {
        final List<String> positional = new ArrayList<>();
        final Map<String, String> options = new HashMap<>();

        Args(String[] argv) {
            for (int i = 1; i < argv.length; i++) {
                String word = argv[i];
                if (word.equals("--wait-go")) {
                    options.put("wait-go", "true");
                } else if (word.startsWith("--")) {
                    if (i + 1 >= argv.length) {
                        fail("option " + word + " needs a value");
                    }
                    options.put(word.substring(2), argv[++i]);
                } else {
                    positional.add(word);
                }
            }
        }

        String pos(int index) {
            if (index >= positional.size()) {
                fail("missing argument " + (index + 1));
            }
            return positional.get(index);
        }

        String str(String name, String fallback) {
            String value = options.get(name);
            if (value == null) {
                if (fallback == null) {
                    fail("missing option --" + name);
                }
                return fallback;
            }
            return value;
        }

        int integer(String name, Integer fallback) {
            return Integer.parseInt(str(name, fallback == null ? null : String.valueOf(fallback)));
        }

        boolean flag(String name) {
            return options.containsKey(name);
        }
    }

    // --- session and stdin ---------------------------------------------------------------

    static CuratorFramework connect(String connectString, Args args) throws Exception {
        int sessionMs = args.integer("session-ms", 6000);
        CuratorFramework client = CuratorFrameworkFactory.builder()
                .connectString(connectString)
                .sessionTimeoutMs(sessionMs)
                .connectionTimeoutMs(Math.max(sessionMs, 5000))
                .retryPolicy(new ExponentialBackoffRetry(50, 10, 1000))
                .build();
        client.getConnectionStateListenable().addListener(
                (c, state) -> emit("state", "state", state.name()));
        client.start();
        if (!client.blockUntilConnected(30, TimeUnit.SECONDS)) {
            fail("not connected to " + connectString);
        }
        return client;
    }

    static void startStdin() {
        Thread reader = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = in.readLine()) != null) {
                    line = line.trim();
                    if (line.equals("go")) {
                        GO.countDown();
                    } else if (!line.isEmpty()) {
                        COMMANDS.put(line);
                    }
                }
            } catch (Exception ignored) {
                // treated as end of input
            }
            stdinClosed = true;
            GO.countDown();
            COMMANDS.add(EOF);
        }, "stdin");
        reader.setDaemon(true);
        reader.start();
    }

    /** Waits for "go" when --wait-go was given; false if stdin closed first. */
    static boolean awaitGo(Args args) throws InterruptedException {
        if (!args.flag("wait-go")) {
            return true;
        }
        GO.await();
        return !stdinClosed;
    }

    static void sleepMs(int ms) throws InterruptedException {
        if (ms > 0) {
            Thread.sleep(ms);
        }
    }

    // --- exclusion proofs ----------------------------------------------------------------

    /** Creates the guard node; false (and an "overlap" event) if it already exists. */
    static boolean createGuard(CuratorFramework client, String guard, String id, int round) throws Exception {
        try {
            client.create().creatingParentsIfNeeded().withMode(CreateMode.EPHEMERAL)
                    .forPath(guard, id.getBytes(StandardCharsets.UTF_8));
            return true;
        } catch (KeeperException.NodeExistsException e) {
            String holder;
            try {
                holder = new String(client.getData().forPath(guard), StandardCharsets.UTF_8);
            } catch (KeeperException.NoNodeException gone) {
                holder = null;
            }
            emit("overlap", "round", round, "id", id, "holder", holder);
            return false;
        }
    }

    static Long czxid(CuratorFramework client, String path) throws Exception {
        if (path == null) {
            return null;
        }
        Stat stat = client.checkExists().forPath(path);
        return stat == null ? null : stat.getCzxid();
    }

    // --- commands ------------------------------------------------------------------------

    static void mutex(Args args) throws Exception {
        String path = args.pos(1);
        String id = args.str("id", null);
        int rounds = args.integer("rounds", null);
        int hold = args.integer("hold-ms", 0);
        int gap = args.integer("gap-ms", 0);
        int timeout = args.integer("timeout-ms", 60000);
        String guard = args.str("guard", null);
        try (CuratorFramework client = connect(args.pos(0), args)) {
            startStdin();
            emit("ready", "id", id);
            if (!awaitGo(args)) {
                return;
            }
            Mutex mutex = new Mutex(client, path);
            int overlaps = 0;
            for (int round = 1; round <= rounds && !stdinClosed; round++) {
                long start = System.nanoTime();
                if (!mutex.acquire(timeout, TimeUnit.MILLISECONDS)) {
                    fail("mutex not acquired within " + timeout + " ms (round " + round + ")");
                }
                double waited = (System.nanoTime() - start) / 1e6;
                boolean mine = createGuard(client, guard, id, round);
                if (!mine) {
                    overlaps++;
                }
                String node = mutex.lockPath();
                emit("acquired", "round", round, "id", id, "node", node, "czxid", czxid(client, node),
                        "wait_ms", waited);
                sleepMs(hold);
                emit("releasing", "round", round, "id", id);
                if (mine) {
                    client.delete().forPath(guard);
                }
                mutex.release();
                emit("released", "round", round, "id", id);
                sleepMs(gap);
            }
            emit("done", "id", id, "acquisitions", rounds, "overlaps", overlaps);
        }
    }

    static void selector(Args args) throws Exception {
        String path = args.pos(1);
        String id = args.str("id", null);
        int rounds = args.integer("rounds", null);
        int hold = args.integer("hold-ms", 0);
        int timeout = args.integer("timeout-ms", 60000);
        String guard = args.str("guard", null);
        try (CuratorFramework client = connect(args.pos(0), args)) {
            startStdin();
            emit("ready", "id", id);
            if (!awaitGo(args)) {
                return;
            }
            AtomicInteger done = new AtomicInteger();
            AtomicInteger overlaps = new AtomicInteger();
            CountDownLatch finished = new CountDownLatch(1);
            LeaderSelector selector = new LeaderSelector(client, path, new LeaderSelectorListenerAdapter() {
                @Override
                public void takeLeadership(CuratorFramework c) throws Exception {
                    if (done.get() >= rounds) {
                        return; // a requeue after the last counted round, before close()
                    }
                    int round = done.get() + 1;
                    boolean mine = createGuard(c, guard, id, round);
                    if (!mine) {
                        overlaps.incrementAndGet();
                    }
                    emit("acquired", "round", round, "id", id);
                    sleepMs(hold);
                    emit("releasing", "round", round, "id", id);
                    if (mine) {
                        c.delete().forPath(guard);
                    }
                    emit("released", "round", round, "id", id);
                    if (done.incrementAndGet() >= rounds) {
                        finished.countDown();
                    }
                }
            });
            selector.setId(id);
            selector.autoRequeue();
            selector.start();
            if (!finished.await(timeout, TimeUnit.MILLISECONDS)) {
                fail("selector: " + done.get() + " of " + rounds + " rounds within " + timeout + " ms");
            }
            selector.close();
            emit("done", "id", id, "acquisitions", done.get(), "overlaps", overlaps.get());
        }
    }

    static LeaderLatch newLatch(CuratorFramework client, String path, String id, int round) {
        LeaderLatch latch = new LeaderLatch(client, path, id);
        latch.addListener(new LeaderLatchListener() {
            @Override
            public void isLeader() {
                emit("isLeader", "id", id, "round", round);
            }

            @Override
            public void notLeader() {
                emit("notLeader", "id", id, "round", round);
            }
        });
        return latch;
    }

    static List<Map<String, Object>> describe(Collection<Participant> participants) {
        List<Map<String, Object>> out = new ArrayList<>();
        for (Participant p : participants) {
            Map<String, Object> item = new LinkedHashMap<>();
            item.put("id", p.getId());
            item.put("leader", p.isLeader());
            out.add(item);
        }
        return out;
    }

    static void latch(Args args) throws Exception {
        String path = args.pos(1);
        String id = args.str("id", null);
        try (CuratorFramework client = connect(args.pos(0), args)) {
            startStdin();
            emit("ready", "id", id);
            if (args.options.containsKey("rounds")) {
                latchRounds(client, args, path, id);
                return;
            }
            int duration = args.integer("duration-ms", 0);
            long deadline = duration > 0 ? System.nanoTime() + duration * 1_000_000L : Long.MAX_VALUE;
            LeaderLatch latch = newLatch(client, path, id, 1);
            latch.start();
            // The node is created in the background; report it once known.
            long until = System.nanoTime() + 30_000_000_000L;
            while (latch.getOurPath() == null && System.nanoTime() < until) {
                Thread.sleep(5);
            }
            emit("started", "id", id, "node", latch.getOurPath());
            while (true) {
                long left = (deadline - System.nanoTime()) / 1_000_000L;
                if (left <= 0) {
                    break;
                }
                String command = COMMANDS.poll(Math.min(left, 3_600_000L), TimeUnit.MILLISECONDS);
                if (command == null) {
                    continue;
                }
                if (command.equals(EOF) || command.equals("close")) {
                    break;
                } else if (command.equals("participants")) {
                    Participant leader = latch.getLeader();
                    emit("participants", "id", id, "participants", describe(latch.getParticipants()),
                            "leader", leader.getId().isEmpty() && !leader.isLeader() ? null : leader.getId(),
                            "has_leadership", latch.hasLeadership(), "node", latch.getOurPath());
                } else {
                    fail("unknown command " + command);
                }
            }
            latch.close(LeaderLatch.CloseMode.NOTIFY_LEADER);
            emit("closed", "id", id);
        }
    }

    static void latchRounds(CuratorFramework client, Args args, String path, String id) throws Exception {
        int rounds = args.integer("rounds", null);
        int hold = args.integer("hold-ms", 0);
        int timeout = args.integer("timeout-ms", 60000);
        String guard = args.str("guard", null);
        if (!awaitGo(args)) {
            return;
        }
        int overlaps = 0;
        for (int round = 1; round <= rounds && !stdinClosed; round++) {
            LeaderLatch latch = newLatch(client, path, id, round);
            latch.start();
            if (!latch.await(timeout, TimeUnit.MILLISECONDS)) {
                fail("latch: no leadership within " + timeout + " ms (round " + round + ")");
            }
            boolean mine = createGuard(client, guard, id, round);
            if (!mine) {
                overlaps++;
            }
            String node = latch.getOurPath();
            emit("acquired", "round", round, "id", id, "node", node, "czxid", czxid(client, node));
            sleepMs(hold);
            emit("releasing", "round", round, "id", id);
            if (mine) {
                client.delete().forPath(guard);
            }
            latch.close();
            emit("released", "round", round, "id", id);
        }
        emit("done", "id", id, "acquisitions", rounds, "overlaps", overlaps);
    }

    /** Creates DIR/name and lists DIR: the caller judges the holders it sees. */
    static List<String> enterGuardDir(CuratorFramework client, String dir, String name, String id) throws Exception {
        client.create().creatingParentsIfNeeded().withMode(CreateMode.EPHEMERAL)
                .forPath(dir + "/" + name, id.getBytes(StandardCharsets.UTF_8));
        return client.getChildren().forPath(dir);
    }

    static void rwlock(Args args) throws Exception {
        String path = args.pos(1);
        String id = args.str("id", null);
        String mode = args.str("mode", null);
        if (!mode.equals("read") && !mode.equals("write")) {
            fail("--mode read|write");
        }
        int rounds = args.integer("rounds", null);
        int hold = args.integer("hold-ms", 0);
        int gap = args.integer("gap-ms", 0);
        int timeout = args.integer("timeout-ms", 60000);
        String dir = args.str("guard-dir", null);
        try (CuratorFramework client = connect(args.pos(0), args)) {
            startStdin();
            emit("ready", "id", id);
            if (!awaitGo(args)) {
                return;
            }
            InterProcessReadWriteLock rw = new InterProcessReadWriteLock(client, path);
            InterProcessMutex lock = mode.equals("read") ? rw.readLock() : rw.writeLock();
            int overlaps = 0;
            int maxReaders = 0;
            for (int round = 1; round <= rounds && !stdinClosed; round++) {
                if (!lock.acquire(timeout, TimeUnit.MILLISECONDS)) {
                    fail("rwlock " + mode + " not acquired within " + timeout + " ms (round " + round + ")");
                }
                String name = mode + "-" + id + "-" + round;
                List<String> holders = enterGuardDir(client, dir, name, id);
                int readers = 0;
                int writers = 0;
                for (String child : holders) {
                    if (child.startsWith("write-")) {
                        writers++;
                    } else {
                        readers++;
                    }
                }
                boolean overlap = mode.equals("write") ? holders.size() > 1 : writers > 0;
                if (overlap) {
                    overlaps++;
                    emit("overlap", "round", round, "id", id, "holders", holders);
                }
                maxReaders = Math.max(maxReaders, readers);
                emit("acquired", "round", round, "id", id, "mode", mode, "holders", holders.size(),
                        "readers", readers);
                sleepMs(hold);
                emit("releasing", "round", round, "id", id);
                client.delete().forPath(dir + "/" + name);
                lock.release();
                emit("released", "round", round, "id", id);
                sleepMs(gap);
            }
            emit("done", "id", id, "acquisitions", rounds, "overlaps", overlaps, "max_readers", maxReaders);
        }
    }

    static void semaphore(Args args) throws Exception {
        String path = args.pos(1);
        String id = args.str("id", null);
        int max = args.integer("max", null);
        int rounds = args.integer("rounds", null);
        int hold = args.integer("hold-ms", 0);
        int gap = args.integer("gap-ms", 0);
        int timeout = args.integer("timeout-ms", 60000);
        String dir = args.str("guard-dir", null);
        try (CuratorFramework client = connect(args.pos(0), args)) {
            startStdin();
            emit("ready", "id", id);
            if (!awaitGo(args)) {
                return;
            }
            InterProcessSemaphoreV2 semaphore = new InterProcessSemaphoreV2(client, path, max);
            int overlaps = 0;
            int maxHolders = 0;
            for (int round = 1; round <= rounds && !stdinClosed; round++) {
                Lease lease = semaphore.acquire(timeout, TimeUnit.MILLISECONDS);
                if (lease == null) {
                    fail("semaphore lease not acquired within " + timeout + " ms (round " + round + ")");
                }
                String name = "h-" + id + "-" + round;
                List<String> holders = enterGuardDir(client, dir, name, id);
                if (holders.size() > max) {
                    overlaps++;
                    emit("overlap", "round", round, "id", id, "holders", holders);
                }
                maxHolders = Math.max(maxHolders, holders.size());
                emit("acquired", "round", round, "id", id, "holders", holders.size(), "node", lease.getNodeName());
                sleepMs(hold);
                emit("releasing", "round", round, "id", id);
                client.delete().forPath(dir + "/" + name);
                semaphore.returnLease(lease);
                emit("released", "round", round, "id", id);
                sleepMs(gap);
            }
            emit("done", "id", id, "acquisitions", rounds, "overlaps", overlaps, "max_holders", maxHolders);
        }
    }

    static void sharedcount(Args args) throws Exception {
        String path = args.pos(1);
        int seed = args.integer("seed", 0);
        try (CuratorFramework client = connect(args.pos(0), args)) {
            SharedCount count = new SharedCount(client, path, seed);
            count.addListener(new SharedCountListener() {
                @Override
                public void countHasChanged(SharedCountReader reader, int newCount) {
                    emit("changed", "value", newCount);
                }

                @Override
                public void stateChanged(CuratorFramework c, ConnectionState state) {}
            });
            count.start();
            startStdin();
            VersionedValue<Integer> current = count.getVersionedValue();
            emit("ready", "value", current.getValue(), "version", current.getVersion());
            VersionedValue<Integer> snapshot = current;
            while (true) {
                String command = COMMANDS.take();
                if (command.equals(EOF)) {
                    break;
                }
                String[] words = command.split(" ");
                switch (words[0]) {
                    case "get": {
                        VersionedValue<Integer> v = count.getVersionedValue();
                        emit("value", "value", v.getValue(), "version", v.getVersion());
                        break;
                    }
                    case "snapshot": {
                        snapshot = count.getVersionedValue();
                        emit("value", "value", snapshot.getValue(), "version", snapshot.getVersion());
                        break;
                    }
                    case "set":
                        count.setCount(Integer.parseInt(words[1]));
                        emit("set", "value", Integer.parseInt(words[1]));
                        break;
                    case "trySet":
                        emit("trySet", "ok", count.trySetCount(snapshot, Integer.parseInt(words[1])));
                        break;
                    case "increment": {
                        int times = Integer.parseInt(words[1]);
                        int retries = 0;
                        for (int i = 0; i < times; i++) {
                            while (true) {
                                VersionedValue<Integer> v = count.getVersionedValue();
                                if (count.trySetCount(v, v.getValue() + 1)) {
                                    break;
                                }
                                retries++;
                            }
                        }
                        emit("incremented", "count", times, "retries", retries);
                        break;
                    }
                    default:
                        fail("unknown command " + command);
                }
            }
            count.close();
        }
    }

    static Map<String, Object> result(String op, AtomicValue<Long> value) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("op", op);
        out.put("succeeded", value.succeeded());
        out.put("pre", value.preValue());
        out.put("post", value.postValue());
        return out;
    }

    static void atomiclong(Args args) throws Exception {
        String path = args.pos(1);
        try (CuratorFramework client = connect(args.pos(0), args)) {
            DistributedAtomicLong counter = new DistributedAtomicLong(client, path, new RetryNTimes(1000, 1));
            startStdin();
            emit("ready");
            while (true) {
                String command = COMMANDS.take();
                if (command.equals(EOF)) {
                    break;
                }
                String[] words = command.split(" ");
                AtomicValue<Long> value;
                switch (words[0]) {
                    case "get":
                        value = counter.get();
                        break;
                    case "increment":
                        if (words.length > 1) {
                            int times = Integer.parseInt(words[1]);
                            int failures = 0;
                            for (int i = 0; i < times; i++) {
                                while (!counter.increment().succeeded()) {
                                    failures++;
                                }
                            }
                            emit("incremented", "count", times, "failures", failures);
                            continue;
                        }
                        value = counter.increment();
                        break;
                    case "add":
                        value = counter.add(Long.parseLong(words[1]));
                        break;
                    case "cas":
                        value = counter.compareAndSet(Long.parseLong(words[1]), Long.parseLong(words[2]));
                        break;
                    case "set":
                        counter.forceSet(Long.parseLong(words[1]));
                        value = counter.get();
                        break;
                    case "initialize": {
                        boolean created = counter.initialize(Long.parseLong(words[1]));
                        emit("result", "op", "initialize", "succeeded", created);
                        continue;
                    }
                    default:
                        fail("unknown command " + command);
                        return;
                }
                Map<String, Object> out = result(words[0], value);
                emit("result", "op", out.get("op"), "succeeded", out.get("succeeded"), "pre", out.get("pre"),
                        "post", out.get("post"));
            }
        }
    }

    static void barrier(Args args) throws Exception {
        String path = args.pos(1);
        try (CuratorFramework client = connect(args.pos(0), args)) {
            startStdin();
            emit("ready");
            // DistributedBarrier's methods are synchronized: a waiting one would block set and
            // remove, so every command gets a barrier object of its own.
            while (true) {
                String command = COMMANDS.take();
                if (command.equals(EOF)) {
                    break;
                }
                String[] words = command.split(" ");
                switch (words[0]) {
                    case "set":
                        new DistributedBarrier(client, path).setBarrier();
                        emit("set");
                        break;
                    case "remove":
                        new DistributedBarrier(client, path).removeBarrier();
                        emit("removed");
                        break;
                    case "wait": {
                        long ms = Long.parseLong(words[1]);
                        Thread waiter = new Thread(() -> {
                            try {
                                boolean ok = new DistributedBarrier(client, path)
                                        .waitOnBarrier(ms, TimeUnit.MILLISECONDS);
                                emit("passed", "ok", ok);
                            } catch (Exception e) {
                                fail("waitOnBarrier: " + e);
                            }
                        }, "barrier-wait");
                        waiter.setDaemon(true);
                        waiter.start();
                        emit("waiting");
                        break;
                    }
                    default:
                        fail("unknown command " + command);
                }
            }
        }
    }

    static void doublebarrier(Args args) throws Exception {
        String path = args.pos(1);
        String id = args.str("id", null);
        int members = args.integer("members", null);
        int hold = args.integer("hold-ms", 0);
        int timeout = args.integer("timeout-ms", 60000);
        try (CuratorFramework client = connect(args.pos(0), args)) {
            startStdin();
            emit("ready", "id", id);
            if (!awaitGo(args)) {
                return;
            }
            DistributedDoubleBarrier barrier = new DistributedDoubleBarrier(client, path, members);
            emit("entering", "id", id);
            boolean entered = barrier.enter(timeout, TimeUnit.MILLISECONDS);
            emit("entered", "id", id, "ok", entered);
            sleepMs(hold);
            emit("leaving", "id", id);
            boolean left = barrier.leave(timeout, TimeUnit.MILLISECONDS);
            emit("left", "id", id, "ok", left);
            emit("done", "id", id);
        }
    }

    static void participants(Args args) throws Exception {
        String path = args.pos(1);
        String kind = args.str("kind", "latch");
        try (CuratorFramework client = connect(args.pos(0), args)) {
            Collection<Participant> participants;
            if (kind.equals("latch")) {
                participants = new LeaderLatch(client, path).getParticipants();
            } else if (kind.equals("selector")) {
                LeaderSelector selector = new LeaderSelector(client, path, new LeaderSelectorListenerAdapter() {
                    @Override
                    public void takeLeadership(CuratorFramework c) {}
                });
                participants = selector.getParticipants();
            } else {
                fail("--kind latch|selector");
                return;
            }
            emit("participants", "participants", describe(participants));
        }
    }

    public static void main(String[] argv) {
        if (argv.length == 0) {
            fail("usage: RecipeTool mutex|selector|latch|rwlock|semaphore|sharedcount|atomiclong|barrier|doublebarrier|participants ...");
        }
        Args args = new Args(argv);
        try {
            switch (argv[0]) {
                case "mutex":
                    mutex(args);
                    break;
                case "selector":
                    selector(args);
                    break;
                case "latch":
                    latch(args);
                    break;
                case "rwlock":
                    rwlock(args);
                    break;
                case "semaphore":
                    semaphore(args);
                    break;
                case "sharedcount":
                    sharedcount(args);
                    break;
                case "atomiclong":
                    atomiclong(args);
                    break;
                case "barrier":
                    barrier(args);
                    break;
                case "doublebarrier":
                    doublebarrier(args);
                    break;
                case "participants":
                    participants(args);
                    break;
                default:
                    fail("unknown command " + argv[0]);
            }
        } catch (Throwable e) {
            fail(e.getClass().getName() + ": " + e.getMessage());
        }
        emit("exit");
        OUT.flush();
        System.exit(0);
    }
}
