// A small command-line driver around Apache Curator's service discovery (curator-x-discovery),
// used by tests/interop/curator.py to check that zkwarden's "curator" registry format is what
// Curator itself writes and reads.  Compiled and run by that helper; not part of the package.
//
// Commands (instance options are trailing key=value words, see parseOptions):
//
//   serialize
//       Reads an instance spec (JSON object: name, id, address, port, sslPort, payload,
//       registrationTimeUTC, serviceType, uriSpec (template string), enabled, compatible)
//       from stdin and writes to stdout the exact bytes Curator's JsonInstanceSerializer
//       produces for it. (stdin rather than arguments, so any text survives unchanged.)
//   deserialize [payloadClass]
//       Reads bytes from stdin, parses them with JsonInstanceSerializer(payloadClass) (default
//       java.util.Map) and prints the instance as one JSON line, or "ERROR <what>" and exits 2.
//   register <connect> <base> <name> <id> <address> <port|-> <payloadJson|null> [opts]
//       Registers through ServiceDiscovery and prints "REGISTERED <path>". Then reads commands
//       from stdin: "update <payloadJson>" (prints UPDATED), "unregister" (prints
//       UNREGISTERED), "get" (prints "DATA <base64>" of the instance znode). Exits when stdin
//       closes (the session closes and the ephemeral node goes with it).
//   query <connect> <base> <name>
//       Prints one JSON line per instance returned by queryForInstances, then "END".
//   names <connect> <base>
//       Prints the JSON array returned by queryForNames.
//   get <connect> <path>
//       Prints "DATA <base64>" of a znode's bytes (or "NONODE").
//   create <connect> <path> <data> <scheme:id:perms>...
//       Creates <path> (PERSISTENT; missing parents too, with the same ACL) holding the UTF-8
//       <data> with the given ACL (perms are letters of cdrwa) and prints "CREATED <path>".
//       SASL: run java with -Djava.security.auth.login.config=<jaas> (a Client section).
//   cache <connect> <base> <name>
//       Starts a ServiceCache, prints "READY" and the instance list as one JSON array line, then
//       one JSON array line each time cacheChanged fires. Exits when stdin closes.
//
// Options: sslPort=N serviceType=DYNAMIC|STATIC|PERMANENT|DYNAMIC_SEQUENTIAL
//          uriSpec=<template> registrationTimeUTC=<ms> enabled=true|false compatible=true|false

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.x.discovery.ServiceCache;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.ServiceType;
import org.apache.curator.x.discovery.UriSpec;
import org.apache.curator.x.discovery.details.JsonInstanceSerializer;
import org.apache.curator.x.discovery.details.ServiceCacheListener;
import org.apache.curator.utils.ZKPaths;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.Id;

@SuppressWarnings({"rawtypes", "unchecked"})
public final class CuratorTool {
    // A plain mapper (no type info) to print what Curator parsed.
    private static final ObjectMapper PLAIN = new ObjectMapper();
    private static final PrintStream OUT =
            new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);

    private CuratorTool() {}

    public static void main(String[] args) throws Exception {
        if (args.length == 0) {
            usage();
        }
        String command = args[0];
        switch (command) {
            case "serialize":
                serialize(args);
                break;
            case "deserialize":
                deserialize(args);
                break;
            case "register":
                register(args);
                break;
            case "query":
                query(args);
                break;
            case "names":
                names(args);
                break;
            case "get":
                get(args);
                break;
            case "cache":
                cache(args);
                break;
            case "create":
                create(args);
                break;
            default:
                usage();
        }
        System.exit(0);
    }

    private static void usage() {
        System.err.println("usage: CuratorTool serialize|deserialize|register|query|names|get|cache|create ...");
        System.exit(64);
    }

    private static void need(String[] args, int n) {
        if (args.length < n) {
            usage();
        }
    }

    // --- instances ------------------------------------------------------------------------

    private static Map<String, String> parseOptions(String[] args, int from) {
        Map<String, String> opts = new LinkedHashMap<>();
        for (int i = from; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("bad option: " + args[i]);
                System.exit(64);
            }
            opts.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        return opts;
    }

    private static Object parsePayload(String json) throws Exception {
        if (json.equals("null")) {
            return null;
        }
        // LinkedHashMap keeps the key order of the JSON text, like Jackson's default.
        return PLAIN.readValue(json, LinkedHashMap.class);
    }

    /** args[at..at+4] = name id address port payloadJson; options follow. */
    private static ServiceInstance buildInstance(String[] args, int at, Object payload) throws Exception {
        Map<String, String> opts = parseOptions(args, at + 5);
        String port = args[at + 3];
        Integer portValue = port.equals("-") ? null : Integer.valueOf(port);
        Integer sslPort = opts.containsKey("sslPort") ? Integer.valueOf(opts.get("sslPort")) : null;
        ServiceType type = ServiceType.valueOf(opts.getOrDefault("serviceType", "DYNAMIC"));
        UriSpec uriSpec = opts.containsKey("uriSpec") ? new UriSpec(opts.get("uriSpec")) : null;
        long time = opts.containsKey("registrationTimeUTC")
                ? Long.parseLong(opts.get("registrationTimeUTC"))
                : System.currentTimeMillis();
        boolean enabled = Boolean.parseBoolean(opts.getOrDefault("enabled", "true"));
        return new ServiceInstance(
                args[at], args[at + 1], args[at + 2], portValue, sslPort, payload, time, type, uriSpec, enabled);
    }

    private static boolean compatible(String[] args, int from) {
        return Boolean.parseBoolean(parseOptions(args, from).getOrDefault("compatible", "true"));
    }

    private static Map<String, Object> describe(ServiceInstance instance) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("name", instance.getName());
        out.put("id", instance.getId());
        out.put("address", instance.getAddress());
        out.put("port", instance.getPort());
        out.put("sslPort", instance.getSslPort());
        Object payload = instance.getPayload();
        out.put("payloadClass", payload == null ? null : payload.getClass().getName());
        out.put("payload", payload);
        out.put("registrationTimeUTC", instance.getRegistrationTimeUTC());
        out.put("serviceType", instance.getServiceType() == null ? null : instance.getServiceType().name());
        UriSpec spec = instance.getUriSpec();
        if (spec == null) {
            out.put("uriSpec", null);
            out.put("uri", null);
        } else {
            List<Map<String, Object>> parts = new ArrayList<>();
            for (UriSpec.Part part : spec.getParts()) {
                Map<String, Object> p = new LinkedHashMap<>();
                p.put("value", part.getValue());
                p.put("variable", part.isVariable());
                parts.add(p);
            }
            out.put("uriSpec", parts);
            out.put("uri", instance.buildUriSpec());
        }
        out.put("enabled", instance.isEnabled());
        return out;
    }

    private static String line(Object value) throws Exception {
        return PLAIN.writeValueAsString(value);
    }

    // --- offline commands -----------------------------------------------------------------

    private static void serialize(String[] args) throws Exception {
        Map<String, Object> spec = PLAIN.readValue(readAll(System.in), LinkedHashMap.class);
        Object port = spec.get("port");
        Object sslPort = spec.get("sslPort");
        Object uriSpec = spec.get("uriSpec");
        Object time = spec.get("registrationTimeUTC");
        Object type = spec.get("serviceType");
        ServiceInstance instance = new ServiceInstance(
                (String) spec.get("name"),
                (String) spec.get("id"),
                (String) spec.get("address"),
                port == null ? null : ((Number) port).intValue(),
                sslPort == null ? null : ((Number) sslPort).intValue(),
                spec.get("payload"),
                time == null ? System.currentTimeMillis() : ((Number) time).longValue(),
                type == null ? ServiceType.DYNAMIC : ServiceType.valueOf((String) type),
                uriSpec == null ? null : new UriSpec((String) uriSpec),
                !Boolean.FALSE.equals(spec.get("enabled")));
        boolean compatible = !Boolean.FALSE.equals(spec.get("compatible"));
        JsonInstanceSerializer serializer = new JsonInstanceSerializer(Map.class, compatible);
        byte[] bytes = serializer.serialize(instance);
        System.out.write(bytes);
        System.out.flush();
    }

    private static byte[] readAll(InputStream in) throws Exception {
        ByteArrayOutputStream buffer = new ByteArrayOutputStream();
        in.transferTo(buffer);
        return buffer.toByteArray();
    }

    private static void deserialize(String[] args) throws Exception {
        String payloadClass = args.length > 1 ? args[1] : "java.util.Map";
        byte[] data = readAll(System.in);
        JsonInstanceSerializer serializer = new JsonInstanceSerializer(Class.forName(payloadClass));
        try {
            OUT.println(line(describe(serializer.deserialize(data))));
        } catch (Exception e) {
            OUT.println("ERROR " + e.getClass().getName() + ": " + e.getMessage().replace('\n', ' '));
            System.exit(2);
        }
    }

    // --- commands against a server --------------------------------------------------------

    private static CuratorFramework connect(String connectString) throws Exception {
        CuratorFramework client = CuratorFrameworkFactory.builder()
                .connectString(connectString)
                .sessionTimeoutMs(10000)
                .connectionTimeoutMs(10000)
                .retryPolicy(new ExponentialBackoffRetry(100, 5))
                .build();
        client.start();
        if (!client.blockUntilConnected(20, TimeUnit.SECONDS)) {
            OUT.println("ERROR not connected to " + connectString);
            System.exit(3);
        }
        return client;
    }

    private static ServiceDiscovery discovery(CuratorFramework client, String base, boolean compatible)
            throws Exception {
        ServiceDiscovery discovery = ServiceDiscoveryBuilder.builder(Map.class)
                .client(client)
                .basePath(base)
                .serializer(new JsonInstanceSerializer(Map.class, compatible))
                .build();
        discovery.start();
        return discovery;
    }

    private static String dataLine(CuratorFramework client, String path) throws Exception {
        if (client.checkExists().forPath(path) == null) {
            return "NONODE";
        }
        byte[] data = client.getData().forPath(path);
        return "DATA " + Base64.getEncoder().encodeToString(data);
    }

    private static void register(String[] args) throws Exception {
        need(args, 8);
        String base = args[2];
        ServiceInstance instance = buildInstance(args, 3, parsePayload(args[7]));
        try (CuratorFramework client = connect(args[1]);
                ServiceDiscovery discovery = discovery(client, base, compatible(args, 8))) {
            discovery.registerService(instance);
            String path = ZKPaths.makePath(ZKPaths.makePath(base, instance.getName()), instance.getId());
            OUT.println("REGISTERED " + path);
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            String command;
            while ((command = in.readLine()) != null) {
                command = command.trim();
                if (command.equals("unregister")) {
                    discovery.unregisterService(instance);
                    OUT.println("UNREGISTERED");
                } else if (command.startsWith("update ")) {
                    Object payload = parsePayload(command.substring("update ".length()));
                    instance = new ServiceInstance(
                            instance.getName(), instance.getId(), instance.getAddress(), instance.getPort(),
                            instance.getSslPort(), payload, instance.getRegistrationTimeUTC(),
                            instance.getServiceType(), instance.getUriSpec(), instance.isEnabled());
                    discovery.updateService(instance);
                    OUT.println("UPDATED");
                } else if (command.equals("get")) {
                    OUT.println(dataLine(client, path));
                } else if (!command.isEmpty()) {
                    OUT.println("ERROR unknown command: " + command);
                }
            }
        }
    }

    private static void query(String[] args) throws Exception {
        need(args, 4);
        try (CuratorFramework client = connect(args[1]);
                ServiceDiscovery discovery = discovery(client, args[2], true)) {
            for (Object instance : discovery.queryForInstances(args[3])) {
                OUT.println(line(describe((ServiceInstance) instance)));
            }
            OUT.println("END");
        }
    }

    private static void names(String[] args) throws Exception {
        need(args, 3);
        try (CuratorFramework client = connect(args[1]);
                ServiceDiscovery discovery = discovery(client, args[2], true)) {
            OUT.println(line(new ArrayList<>(discovery.queryForNames())));
        }
    }

    private static void get(String[] args) throws Exception {
        need(args, 3);
        try (CuratorFramework client = connect(args[1])) {
            OUT.println(dataLine(client, args[2]));
        }
    }

    private static void create(String[] args) throws Exception {
        need(args, 5);
        List<ACL> acl = new ArrayList<>();
        for (int i = 4; i < args.length; i++) {
            // scheme:id:perms, where the id may itself hold ':' (digest:user:hash)
            String spec = args[i];
            int first = spec.indexOf(':');
            int last = spec.lastIndexOf(':');
            if (first < 0 || last == first) {
                usage();
            }
            int perms = 0;
            for (char c : spec.substring(last + 1).toCharArray()) {
                perms |= "rwcda".indexOf(c) < 0 ? 0 : 1 << "rwcda".indexOf(c);
            }
            acl.add(new ACL(perms, new Id(spec.substring(0, first), spec.substring(first + 1, last))));
        }
        try (CuratorFramework client = connect(args[1])) {
            String created = client.create().creatingParentsIfNeeded().withACL(acl, true)
                    .forPath(args[2], args[3].getBytes(StandardCharsets.UTF_8));
            OUT.println("CREATED " + created);
        }
    }

    private static synchronized void printCache(ServiceCache cache) {
        List<Map<String, Object>> instances = new ArrayList<>();
        for (Object instance : cache.getInstances()) {
            instances.add(describe((ServiceInstance) instance));
        }
        // Curator's cache keeps a hash map; sort by id so the output is stable.
        instances.sort((a, b) -> String.valueOf(a.get("id")).compareTo(String.valueOf(b.get("id"))));
        try {
            OUT.println(line(instances));
        } catch (Exception e) {
            OUT.println("ERROR " + e);
        }
    }

    private static void cache(String[] args) throws Exception {
        need(args, 4);
        try (CuratorFramework client = connect(args[1]);
                ServiceDiscovery discovery = discovery(client, args[2], true)) {
            ServiceCache cache = discovery.serviceCacheBuilder().name(args[3]).build();
            cache.addListener(new ServiceCacheListener() {
                @Override
                public void cacheChanged() {
                    printCache(cache);
                }

                @Override
                public void stateChanged(CuratorFramework c, ConnectionState state) {
                    OUT.println("STATE " + state.name());
                }
            });
            cache.start();
            synchronized (CuratorTool.class) {
                OUT.println("READY");
                printCache(cache);
            }
            // Block until the parent closes our stdin.
            readAll(System.in);
            cache.close();
        }
    }
}
