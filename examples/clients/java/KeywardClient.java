// Keyward client recipe (Java 17, JDK only: Ed25519, AES-GCM, SHA-256): offline license and
// machine files, signed answers, key rotation and revocation lists. Paste the class's library
// part (above "---- CLI") and its small JSON reader into your app, or use your JSON library.
// Run: java KeywardClient.java <command> …   (usage: examples/clients/python/keyward_client.py)
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.X509EncodedKeySpec;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

public class KeywardClient {
    static final Duration CLOCK_SKEW = Duration.ofMinutes(5);
    // The fixed DER header of an Ed25519 public key (SubjectPublicKeyInfo), before its 32 bytes.
    static final byte[] ED25519_SPKI = HexFormat.of().parseHex("302a300506032b6570032100");

    static class Refused extends Exception {
        final String code;

        Refused(String code, String message) {
            super(message);
            this.code = code;
        }
    }

    record FileContents(String kind, String kid, Map<String, Object> payload) {}

    static byte[] sha256(byte[] bytes) throws Exception {
        return MessageDigest.getInstance("SHA-256").digest(bytes);
    }

    static String kidOf(byte[] publicKey) throws Exception {
        return HexFormat.of().formatHex(sha256(publicKey)).substring(0, 16);
    }

    /** kid → raw public key, from base64 keys. */
    static Map<String, byte[]> trustSet(List<Object> keysB64) throws Exception {
        Map<String, byte[]> trusted = new LinkedHashMap<>();
        for (Object b64 : keysB64) {
            byte[] raw = Base64.getDecoder().decode((String) b64);
            trusted.put(kidOf(raw), raw);
        }
        return trusted;
    }

    static boolean verifies(byte[] publicKey, String signatureB64, byte[] message) {
        try {
            byte[] der = new byte[ED25519_SPKI.length + publicKey.length];
            System.arraycopy(ED25519_SPKI, 0, der, 0, ED25519_SPKI.length);
            System.arraycopy(publicKey, 0, der, ED25519_SPKI.length, publicKey.length);
            PublicKey key = KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(der));
            Signature verifier = Signature.getInstance("Ed25519");
            verifier.initVerify(key);
            verifier.update(message);
            return verifier.verify(Base64.getDecoder().decode(signatureB64));
        } catch (Exception e) {
            return false;
        }
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> object(Object o) throws Refused {
        if (o instanceof Map) return (Map<String, Object>) o;
        throw new Refused("MALFORMED", "expected a JSON object");
    }

    /** Verifies, decrypts and dates a license or machine file. */
    static FileContents readFile(String text, Map<String, byte[]> trusted, String licenseKey, String fingerprint,
            Instant now) throws Exception {
        String[] lines = text.strip().split("\\r?\\n");
        String first = lines[0].strip(), last = lines[lines.length - 1].strip();
        String kind = first.equals("-----BEGIN LICENSE FILE-----") ? "license"
                : first.equals("-----BEGIN MACHINE FILE-----") ? "machine" : null;
        if (kind == null || lines.length < 3 || !last.equals("-----END " + kind.toUpperCase() + " FILE-----"))
            throw new Refused("MALFORMED", "not a license or machine file");
        Map<String, Object> outer;
        try {
            String body = String.join("", List.of(lines).subList(1, lines.length - 1)).strip();
            outer = object(Json.parse(new String(Base64.getDecoder().decode(body), StandardCharsets.UTF_8)));
        } catch (IllegalArgumentException e) {
            throw new Refused("MALFORMED", "the file's body is not base64 JSON");
        }
        if (!(outer.get("enc") instanceof String enc) || !(outer.get("sig") instanceof String sig))
            throw new Refused("MALFORMED", "no enc or sig");
        Object alg = outer.get("alg");
        if (!"aes-256-gcm+ed25519".equals(alg) && !"base64+ed25519".equals(alg))
            throw new Refused("UNSUPPORTED_ALG", "unsupported algorithm " + alg);
        // Keygen's own files name no key: any trusted key may have signed them.
        Object named = outer.get("kid");
        if (named != null && !trusted.containsKey(named))
            throw new Refused("UNKNOWN_KID", "signed by key " + named + ", which is not trusted: update the trust set");
        List<String> candidates = named != null ? List.of((String) named) : new ArrayList<>(trusted.keySet());
        byte[] message = (kind + "/" + enc).getBytes(StandardCharsets.UTF_8);
        String kid = candidates.stream().filter(k -> verifies(trusted.get(k), sig, message)).findFirst().orElse(null);
        if (kid == null) throw new Refused("BAD_SIGNATURE", "the signature does not verify with a trusted key");
        Map<String, Object> payload;
        try {
            byte[] plaintext;
            if (alg.equals("base64+ed25519")) {
                plaintext = Base64.getDecoder().decode(enc);
            } else {
                String[] parts = enc.split("\\.");
                byte[] ciphertext = Base64.getDecoder().decode(parts[0]);
                byte[] iv = Base64.getDecoder().decode(parts[1]);
                byte[] tag = Base64.getDecoder().decode(parts[2]);
                byte[] sealed = new byte[ciphertext.length + tag.length];
                System.arraycopy(ciphertext, 0, sealed, 0, ciphertext.length);
                System.arraycopy(tag, 0, sealed, ciphertext.length, tag.length);
                byte[] aesKey = sha256((licenseKey + fingerprint).getBytes(StandardCharsets.UTF_8));
                Cipher aes = Cipher.getInstance("AES/GCM/NoPadding");
                aes.init(Cipher.DECRYPT_MODE, new SecretKeySpec(aesKey, "AES"), new GCMParameterSpec(128, iv));
                plaintext = aes.doFinal(sealed);
            }
            payload = object(Json.parse(new String(plaintext, StandardCharsets.UTF_8)));
        } catch (Exception e) {
            throw new Refused("UNDECRYPTABLE", "the file does not decrypt with this license key and fingerprint");
        }
        Map<String, Object> meta = object(payload.get("meta"));
        Instant issued;
        try {
            issued = Instant.parse((String) meta.get("issued"));
        } catch (RuntimeException e) {
            throw new Refused("MALFORMED", "no meta.issued");
        }
        // An unencrypted file opens with any key: only its contents say whose it is.
        Object attributes = payload.get("data") instanceof Map<?, ?> data ? data.get("attributes") : null;
        if (!(attributes instanceof Map<?, ?> license && licenseKey.equals(license.get("key"))))
            throw new Refused("WRONG_LICENSE", "the file is about another license");
        boolean onThisMachine = payload.get("included") instanceof List<?> included
                && included.stream().anyMatch(i -> i instanceof Map<?, ?> m && "machines".equals(m.get("type"))
                        && m.get("attributes") instanceof Map<?, ?> machine
                        && fingerprint.equals(machine.get("fingerprint")));
        if (kind.equals("machine") && !onThisMachine)
            throw new Refused("WRONG_MACHINE", "the file is about another machine");
        if (issued.isAfter(now.plus(CLOCK_SKEW)))
            throw new Refused("NOT_YET_VALID", "the file is issued in the future: is the clock wrong?");
        if (meta.get("ttl") instanceof Number ttl && now.isAfter(issued.plusSeconds(ttl.longValue())))
            throw new Refused("EXPIRED", "the file's TTL has passed: check out a new one");
        return new FileContents(kind, kid, payload);
    }

    /** An answer's X-Signature over its exact body bytes, by the key X-Keyward-Key-Id names. */
    static Map<String, Object> verifySigned(byte[] body, String signatureB64, String kid, Map<String, byte[]> trusted)
            throws Refused {
        if (!trusted.containsKey(kid)) throw new Refused("UNKNOWN_KID", "signed by key " + kid + ", which is not trusted");
        if (!verifies(trusted.get(kid), signatureB64, body))
            throw new Refused("BAD_SIGNATURE", "the signature does not verify over the body");
        return object(Json.parse(new String(body, StandardCharsets.UTF_8)));
    }

    static Map<String, Object> verifyAnswer(byte[] body, String signatureB64, String kid, String nonce,
            Map<String, byte[]> trusted) throws Refused {
        Map<String, Object> answer = verifySigned(body, signatureB64, kid, trusted);
        if (!nonce.equals(answer.get("nonce")))
            throw new Refused("NONCE_MISMATCH", "the answer does not carry this request's nonce: a replay?");
        return answer;
    }

    /** Follows rotations in a public-key answer ({"keys":[…]}): a listed key is trusted only if its
     * endorsement verifies with a key already trusted; retired keys are dropped. Returns the kids
     * it accepted; {@code trusted} is updated in place. */
    @SuppressWarnings("unchecked")
    static List<String> updateTrust(Map<String, byte[]> trusted, Map<String, Object> keyList, List<String> dropped)
            throws Exception {
        List<Object> keys = keyList.get("keys") instanceof List<?> l ? (List<Object>) l : List.of();
        List<String> accepted = new ArrayList<>();
        for (boolean endorsed = true; endorsed; ) { // until nothing new: chains A → B → C work
            endorsed = false;
            for (Object o : keys) {
                Map<String, Object> entry = object(o);
                String publicKey = (String) entry.get("publicKey");
                byte[] raw = Base64.getDecoder().decode(publicKey);
                String kid = kidOf(raw);
                if (trusted.containsKey(kid) || !kid.equals(entry.get("kid"))) continue;
                if (!(entry.get("endorsement") instanceof Map<?, ?> e) || !trusted.containsKey(e.get("kid"))) continue;
                byte[] message = ("keyward-key-endorsement/" + publicKey).getBytes(StandardCharsets.UTF_8);
                if (verifies(trusted.get(e.get("kid")), (String) e.get("signature"), message)) {
                    trusted.put(kid, raw);
                    accepted.add(kid);
                    endorsed = true;
                }
            }
        }
        for (Object o : keys) {
            Map<String, Object> entry = object(o);
            String kid = kidOf(Base64.getDecoder().decode((String) entry.get("publicKey")));
            if (Boolean.TRUE.equals(entry.get("retired")) && trusted.remove(kid) != null) dropped.add(kid);
        }
        if (!trusted.containsKey(keyList.get("kid")))
            throw new Refused("UNTRUSTED_CURRENT", "the current key " + keyList.get("kid") + " is not endorsed by a trusted key");
        return accepted;
    }

    /** Verifies a revocation list; refuses an older one and a license it names. Returns its version. */
    static long checkRevocation(byte[] body, String signatureB64, String kid, Map<String, byte[]> trusted,
            String licenseKey, long lastSeenVersion) throws Exception {
        Map<String, Object> list = verifySigned(body, signatureB64, kid, trusted);
        long version = ((Number) list.get("version")).longValue();
        if (version < lastSeenVersion)
            throw new Refused("STALE_LIST", "list version " + version + " is older than " + lastSeenVersion);
        String digest = HexFormat.of().formatHex(sha256(licenseKey.strip().toUpperCase().getBytes(StandardCharsets.UTF_8)));
        for (Object o : (List<?>) list.get("revoked")) {
            Map<String, Object> entry = object(o);
            if (digest.equals(entry.get("keySha256"))) throw new Refused("REVOKED", "the license is " + entry.get("status"));
        }
        return version;
    }

    /** A minimal JSON reader (objects → LinkedHashMap, arrays → List, numbers → Long or Double). */
    static final class Json {
        private final String s;
        private int i;

        private Json(String s) {
            this.s = s;
        }

        static Object parse(String text) throws Refused {
            Json p = new Json(text);
            try {
                Object value = p.value();
                p.space();
                if (p.i != p.s.length()) throw new Refused("MALFORMED", "trailing characters after JSON");
                return value;
            } catch (IndexOutOfBoundsException | NumberFormatException e) {
                throw new Refused("MALFORMED", "not JSON");
            }
        }

        private void space() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
        }

        private Object value() throws Refused {
            space();
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> map = new LinkedHashMap<>();
                i++;
                space();
                if (s.charAt(i) == '}') { i++; return map; }
                do {
                    space();
                    String key = string();
                    space();
                    expect(':');
                    map.put(key, value());
                    space();
                } while (s.charAt(i++) == ',');
                if (s.charAt(i - 1) != '}') throw new Refused("MALFORMED", "bad JSON object");
                return map;
            }
            if (c == '[') {
                List<Object> list = new ArrayList<>();
                i++;
                space();
                if (s.charAt(i) == ']') { i++; return list; }
                do {
                    list.add(value());
                    space();
                } while (s.charAt(i++) == ',');
                if (s.charAt(i - 1) != ']') throw new Refused("MALFORMED", "bad JSON array");
                return list;
            }
            if (c == '"') return string();
            for (String word : new String[] {"true", "false", "null"}) {
                if (s.startsWith(word, i)) {
                    i += word.length();
                    return word.equals("null") ? null : Boolean.valueOf(word);
                }
            }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            String number = s.substring(start, i);
            if (number.isEmpty()) throw new Refused("MALFORMED", "unexpected character in JSON");
            return number.matches("-?\\d+") ? (Object) Long.valueOf(number) : (Object) Double.valueOf(number);
        }

        private void expect(char c) throws Refused {
            if (s.charAt(i++) != c) throw new Refused("MALFORMED", "expected " + c + " in JSON");
        }

        private String string() throws Refused {
            expect('"');
            StringBuilder out = new StringBuilder();
            for (char c = s.charAt(i++); c != '"'; c = s.charAt(i++)) {
                if (c != '\\') { out.append(c); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n' -> out.append('\n');
                    case 't' -> out.append('\t');
                    case 'r' -> out.append('\r');
                    case 'b' -> out.append('\b');
                    case 'f' -> out.append('\f');
                    case 'u' -> { out.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; }
                    default -> out.append(e);
                }
            }
            return out.toString();
        }

        static String write(Object v) {
            if (v == null) return "null";
            if (v instanceof String str) {
                StringBuilder out = new StringBuilder("\"");
                for (char c : str.toCharArray()) {
                    if (c == '"' || c == '\\') out.append('\\').append(c);
                    else if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
                    else out.append(c);
                }
                return out.append('"').toString();
            }
            if (v instanceof Map<?, ?> map) {
                List<String> members = new ArrayList<>();
                map.forEach((k, x) -> members.add(write(k) + ":" + write(x)));
                return "{" + String.join(",", members) + "}";
            }
            if (v instanceof List<?> list) {
                return "[" + String.join(",", list.stream().map(Json::write).toList()) + "]";
            }
            return String.valueOf(v);
        }
    }

    // ---- CLI (for the tests; not part of the recipe) ----------------------------------------

    @SuppressWarnings("unchecked")
    public static void main(String[] argv) throws Exception {
        Map<String, int[]> arity = Map.of("file", new int[] {4, 5}, "answer", new int[] {6, 6},
                "rotate", new int[] {3, 3}, "revoked", new int[] {7, 7});
        int[] n = argv.length > 0 ? arity.get(argv[0]) : null;
        if (n == null || argv.length < n[0] || argv.length > n[1]) {
            System.err.println("usage: see examples/clients/python/keyward_client.py");
            System.exit(2);
        }
        String clock = System.getenv("KEYWARD_CLIENT_NOW");
        Instant now = clock != null && !clock.isEmpty() ? Instant.parse(clock) : Instant.now();
        Map<String, byte[]> trusted = trustSet((List<Object>) Json.parse(Files.readString(Path.of(argv[1]))));
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("ok", true);
        try {
            switch (argv[0]) {
                case "file" -> {
                    FileContents f = readFile(Files.readString(Path.of(argv[2])), trusted, argv[3],
                            argv.length > 4 ? argv[4] : "", now);
                    out.put("kind", f.kind());
                    out.put("kid", f.kid());
                    out.put("payload", f.payload());
                }
                case "answer" -> {
                    out.put("kid", argv[4]);
                    out.put("body", verifyAnswer(Files.readAllBytes(Path.of(argv[2])), argv[3], argv[4], argv[5], trusted));
                }
                case "rotate" -> {
                    List<String> dropped = new ArrayList<>();
                    Map<String, Object> keyList = object(Json.parse(Files.readString(Path.of(argv[2]))));
                    List<String> accepted = updateTrust(trusted, keyList, dropped);
                    out.put("trusted", trusted.values().stream().map(k -> Base64.getEncoder().encodeToString(k)).toList());
                    out.put("accepted", accepted);
                    out.put("dropped", dropped);
                }
                default -> {
                    out.put("version", checkRevocation(Files.readAllBytes(Path.of(argv[2])), argv[3], argv[4], trusted,
                            argv[5], Long.parseLong(argv[6])));
                    out.put("revoked", false);
                }
            }
        } catch (Refused r) {
            Map<String, Object> refusal = new LinkedHashMap<>();
            refusal.put("ok", false);
            refusal.put("error", r.code);
            refusal.put("message", r.getMessage());
            System.out.println(Json.write(refusal));
            System.exit(1);
        }
        System.out.println(Json.write(out));
    }
}
