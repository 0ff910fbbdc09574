/* Keyward client recipe (C: OpenSSL 3 libcrypto for Ed25519, AES-256-GCM, SHA-256 and base64;
 * cJSON for JSON): offline license and machine files, signed answers, key rotation and
 * revocation lists. Paste the part above "---- CLI" into your app.
 *
 * Build (Debian: libssl-dev libcjson-dev pkg-config):
 *   cc -O2 -o keyward_client keyward_client.c $(pkg-config --cflags --libs libcrypto libcjson)
 * Usage: as examples/clients/python/keyward_client.py.
 */
#define _DEFAULT_SOURCE /* timegm */
#include <cJSON.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLOCK_SKEW_SECS 300
#define MAX_TRUSTED 64

typedef struct {
    char kid[17];
    unsigned char key[32];
} keyward_key;

typedef struct {
    keyward_key keys[MAX_TRUSTED];
    size_t n;
} keyward_trust;

typedef struct {
    const char *code;
    char message[160];
} keyward_refusal;

static int refuse(keyward_refusal *r, const char *code, const char *message, const char *arg) {
    r->code = code;
    snprintf(r->message, sizeof r->message, message, arg ? arg : "");
    return -1;
}

/* Decodes standard base64 (no whitespace) into a new buffer, NUL-terminated for convenience. */
static unsigned char *b64decode(const char *in, size_t len, size_t *out_len) {
    if (len % 4 != 0) return NULL;
    unsigned char *out = malloc(len / 4 * 3 + 1);
    int n = out ? EVP_DecodeBlock(out, (const unsigned char *)in, (int)len) : -1;
    if (n < 0) {
        free(out);
        return NULL;
    }
    for (size_t i = len; i > 0 && in[i - 1] == '='; i--) n--; /* EVP_DecodeBlock keeps padding */
    out[n] = 0;
    *out_len = (size_t)n;
    return out;
}

static void sha256(const void *data, size_t len, unsigned char out[32]) {
    EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL);
}

static void to_hex(const unsigned char *in, size_t len, char *out) {
    for (size_t i = 0; i < len; i++) sprintf(out + 2 * i, "%02x", in[i]);
}

void keyward_kid(const unsigned char key[32], char kid[17]) {
    unsigned char digest[32];
    char hex[65];
    sha256(key, 32, digest);
    to_hex(digest, 32, hex);
    memcpy(kid, hex, 16);
    kid[16] = 0;
}

/* Adds a base64 public key to the trust set; returns its slot or NULL. */
const keyward_key *keyward_trust_add(keyward_trust *t, const char *key_b64) {
    size_t len;
    unsigned char *raw = b64decode(key_b64, strlen(key_b64), &len);
    if (!raw || len != 32 || t->n == MAX_TRUSTED) {
        free(raw);
        return NULL;
    }
    keyward_key *k = &t->keys[t->n++];
    memcpy(k->key, raw, 32);
    keyward_kid(k->key, k->kid);
    free(raw);
    return k;
}

const keyward_key *keyward_trust_find(const keyward_trust *t, const char *kid) {
    for (size_t i = 0; kid && i < t->n; i++)
        if (strcmp(t->keys[i].kid, kid) == 0) return &t->keys[i];
    return NULL;
}

static int verifies(const unsigned char key[32], const char *sig_b64, const void *msg, size_t len) {
    size_t sig_len;
    unsigned char *sig = sig_b64 ? b64decode(sig_b64, strlen(sig_b64), &sig_len) : NULL;
    EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, key, 32);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = sig && sig_len == 64 && pkey && ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1 &&
             EVP_DigestVerify(ctx, sig, 64, msg, len) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    free(sig);
    return ok;
}

static int aes_gcm_open(const unsigned char key[32], const unsigned char *iv, size_t iv_len,
                        const unsigned char *ct, size_t ct_len, const unsigned char *tag, unsigned char *out) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n, ok = ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
                EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, (int)iv_len, NULL) == 1 &&
                EVP_DecryptInit_ex(ctx, NULL, NULL, key, iv) == 1 &&
                EVP_DecryptUpdate(ctx, out, &n, ct, (int)ct_len) == 1 &&
                EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) == 1 &&
                EVP_DecryptFinal_ex(ctx, out + n, &n) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

/* "2026-01-02T03:04:05.678Z" → seconds (UTC; the fraction is ignored), -1 if unreadable. */
static time_t parse_time(const char *s) {
    struct tm tm = {0};
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

/* Verifies, decrypts and dates a license or machine file. On success *payload is the JSON:API
 * document (cJSON_Delete it), kind is "license" or "machine", kid the key that signed. */
int keyward_read_file(const char *text, const keyward_trust *t, const char *license_key, const char *fingerprint,
                      time_t now, cJSON **payload, char kind[8], char kid[17], keyward_refusal *r) {
    static const char *kinds[] = {"license", "machine"};
    static const char *begin[] = {"-----BEGIN LICENSE FILE-----", "-----BEGIN MACHINE FILE-----"};
    static const char *end[] = {"-----END LICENSE FILE-----", "-----END MACHINE FILE-----"};
    while (*text == ' ' || *text == '\n' || *text == '\r' || *text == '\t') text++;
    int k = strncmp(text, begin[0], strlen(begin[0])) == 0 ? 0 : strncmp(text, begin[1], strlen(begin[1])) == 0 ? 1 : -1;
    const char *stop = k < 0 ? NULL : strstr(text, end[k]);
    if (!stop) return refuse(r, "MALFORMED", "not a license or machine file", NULL);
    strcpy(kind, kinds[k]);

    char *body = malloc(stop - text + 1);
    size_t n = 0, outer_len;
    for (const char *p = text + strlen(begin[k]); p < stop; p++)
        if (*p != '\n' && *p != '\r' && *p != ' ' && *p != '\t') body[n++] = *p;
    unsigned char *outer_text = b64decode(body, n, &outer_len);
    free(body);
    cJSON *outer = outer_text ? cJSON_ParseWithLength((char *)outer_text, outer_len) : NULL;
    free(outer_text);
    const char *enc = cJSON_GetStringValue(cJSON_GetObjectItem(outer, "enc"));
    const char *sig = cJSON_GetStringValue(cJSON_GetObjectItem(outer, "sig"));
    const char *alg = cJSON_GetStringValue(cJSON_GetObjectItem(outer, "alg"));
    const char *named = cJSON_GetStringValue(cJSON_GetObjectItem(outer, "kid"));
    int rc = -1, plain = alg && strcmp(alg, "base64+ed25519") == 0;
    unsigned char *plaintext = NULL;
    size_t plain_len = 0;
    if (!enc || !sig || !alg) {
        refuse(r, "MALFORMED", "the file's body is not base64 JSON with enc, sig and alg", NULL);
        goto done;
    }
    if (!plain && strcmp(alg, "aes-256-gcm+ed25519") != 0) {
        refuse(r, "UNSUPPORTED_ALG", "unsupported algorithm %s", alg);
        goto done;
    }
    if (named && !keyward_trust_find(t, named)) {
        refuse(r, "UNKNOWN_KID", "signed by key %s, which is not trusted: update the trust set", named);
        goto done;
    }
    size_t msg_len = strlen(kind) + 1 + strlen(enc);
    char *message = malloc(msg_len + 1);
    snprintf(message, msg_len + 1, "%s/%s", kind, enc);
    const keyward_key *signer = NULL;
    /* Keygen's own files name no key: any trusted key may have signed them. */
    for (size_t i = 0; i < t->n && !signer; i++)
        if ((!named || strcmp(named, t->keys[i].kid) == 0) && verifies(t->keys[i].key, sig, message, msg_len))
            signer = &t->keys[i];
    free(message);
    if (!signer) {
        refuse(r, "BAD_SIGNATURE", "the signature does not verify with a trusted key", NULL);
        goto done;
    }
    strcpy(kid, signer->kid);

    if (plain) {
        plaintext = b64decode(enc, strlen(enc), &plain_len);
    } else {
        const char *dot1 = strchr(enc, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
        size_t ct_len, iv_len, tag_len;
        unsigned char *ct = dot2 ? b64decode(enc, dot1 - enc, &ct_len) : NULL;
        unsigned char *iv = dot2 ? b64decode(dot1 + 1, dot2 - dot1 - 1, &iv_len) : NULL;
        unsigned char *tag = dot2 ? b64decode(dot2 + 1, strlen(dot2 + 1), &tag_len) : NULL;
        size_t secret_len = strlen(license_key) + strlen(fingerprint);
        char *secret = malloc(secret_len + 1);
        unsigned char aes_key[32];
        snprintf(secret, secret_len + 1, "%s%s", license_key, fingerprint);
        sha256(secret, secret_len, aes_key);
        free(secret);
        plaintext = ct && iv && tag && iv_len == 12 && tag_len == 16 ? malloc(ct_len + 17) : NULL;
        if (plaintext && aes_gcm_open(aes_key, iv, iv_len, ct, ct_len, tag, plaintext)) {
            plain_len = ct_len;
        } else {
            free(plaintext);
            plaintext = NULL;
        }
        free(ct);
        free(iv);
        free(tag);
    }
    *payload = plaintext ? cJSON_ParseWithLength((char *)plaintext, plain_len) : NULL;
    if (!*payload) {
        refuse(r, "UNDECRYPTABLE", "the file does not decrypt with this license key and fingerprint", NULL);
        goto done;
    }
    cJSON *meta = cJSON_GetObjectItem(*payload, "meta"), *ttl = cJSON_GetObjectItem(meta, "ttl");
    time_t issued = parse_time(cJSON_GetStringValue(cJSON_GetObjectItem(meta, "issued")));
    const char *key = cJSON_GetStringValue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(*payload, "data"), "attributes"), "key"));
    int on_this_machine = 0;
    cJSON *included;
    cJSON_ArrayForEach(included, cJSON_GetObjectItem(*payload, "included")) {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(included, "type"));
        const char *fp = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(included, "attributes"), "fingerprint"));
        on_this_machine |= type && fp && strcmp(type, "machines") == 0 && strcmp(fp, fingerprint) == 0;
    }
    if (issued < 0)
        refuse(r, "MALFORMED", "no meta.issued", NULL);
    /* An unencrypted file opens with any key: only its contents say whose it is. */
    else if (!key || strcmp(key, license_key) != 0)
        refuse(r, "WRONG_LICENSE", "the file is about another license", NULL);
    else if (strcmp(kind, "machine") == 0 && !on_this_machine)
        refuse(r, "WRONG_MACHINE", "the file is about another machine", NULL);
    else if (issued > now + CLOCK_SKEW_SECS)
        refuse(r, "NOT_YET_VALID", "the file is issued in the future: is the clock wrong?", NULL);
    else if (cJSON_IsNumber(ttl) && now > issued + (time_t)ttl->valuedouble)
        refuse(r, "EXPIRED", "the file's TTL has passed: check out a new one", NULL);
    else
        rc = 0;
    if (rc != 0) {
        cJSON_Delete(*payload);
        *payload = NULL;
    }
done:
    free(plaintext);
    cJSON_Delete(outer);
    return rc;
}

/* An answer's X-Signature over its exact body bytes, by the key X-Keyward-Key-Id names. */
cJSON *keyward_verify_signed(const char *body, size_t len, const char *sig, const char *kid, const keyward_trust *t,
                             keyward_refusal *r) {
    const keyward_key *key = keyward_trust_find(t, kid);
    if (!key) return refuse(r, "UNKNOWN_KID", "signed by key %s, which is not trusted", kid), NULL;
    if (!verifies(key->key, sig, body, len))
        return refuse(r, "BAD_SIGNATURE", "the signature does not verify over the body", NULL), NULL;
    cJSON *json = cJSON_ParseWithLength(body, len);
    if (!json) refuse(r, "MALFORMED", "the body is not JSON", NULL);
    return json;
}

cJSON *keyward_verify_answer(const char *body, size_t len, const char *sig, const char *kid, const char *nonce,
                             const keyward_trust *t, keyward_refusal *r) {
    cJSON *answer = keyward_verify_signed(body, len, sig, kid, t, r);
    const char *echoed = cJSON_GetStringValue(cJSON_GetObjectItem(answer, "nonce"));
    if (answer && (!echoed || strcmp(echoed, nonce) != 0)) {
        cJSON_Delete(answer);
        return refuse(r, "NONCE_MISMATCH", "the answer does not carry this request's nonce: a replay?", NULL), NULL;
    }
    return answer;
}

/* Follows rotations in a public-key answer ({"keys":[…]}): a listed key is trusted only if its
 * endorsement verifies with a key already trusted; retired keys are dropped. The kids added
 * and dropped are appended to the two cJSON arrays. */
int keyward_update_trust(keyward_trust *t, const cJSON *key_list, cJSON *accepted, cJSON *dropped,
                         keyward_refusal *r) {
    const cJSON *keys = cJSON_GetObjectItem(key_list, "keys"), *entry;
    for (int endorsed = 1; endorsed;) { /* until nothing new: chains A → B → C work */
        endorsed = 0;
        cJSON_ArrayForEach(entry, keys) {
            const char *public_key = cJSON_GetStringValue(cJSON_GetObjectItem(entry, "publicKey"));
            const char *listed_kid = cJSON_GetStringValue(cJSON_GetObjectItem(entry, "kid"));
            const cJSON *e = cJSON_GetObjectItem(entry, "endorsement");
            const keyward_key *endorser = keyward_trust_find(t, cJSON_GetStringValue(cJSON_GetObjectItem(e, "kid")));
            keyward_trust candidate = {.n = 0};
            if (!public_key || !endorser || !keyward_trust_add(&candidate, public_key) || !listed_kid ||
                strcmp(candidate.keys[0].kid, listed_kid) != 0 || keyward_trust_find(t, listed_kid))
                continue;
            size_t len = strlen("keyward-key-endorsement/") + strlen(public_key);
            char *message = malloc(len + 1);
            snprintf(message, len + 1, "keyward-key-endorsement/%s", public_key);
            if (verifies(endorser->key, cJSON_GetStringValue(cJSON_GetObjectItem(e, "signature")), message, len) &&
                keyward_trust_add(t, public_key)) {
                cJSON_AddItemToArray(accepted, cJSON_CreateString(listed_kid));
                endorsed = 1;
            }
            free(message);
        }
    }
    cJSON_ArrayForEach(entry, keys) {
        keyward_trust listed = {.n = 0};
        const char *public_key = cJSON_GetStringValue(cJSON_GetObjectItem(entry, "publicKey"));
        if (!cJSON_IsTrue(cJSON_GetObjectItem(entry, "retired")) || !public_key || !keyward_trust_add(&listed, public_key))
            continue;
        keyward_key *k = (keyward_key *)keyward_trust_find(t, listed.keys[0].kid);
        if (k) {
            cJSON_AddItemToArray(dropped, cJSON_CreateString(k->kid));
            *k = t->keys[--t->n];
        }
    }
    const char *current = cJSON_GetStringValue(cJSON_GetObjectItem(key_list, "kid"));
    if (!keyward_trust_find(t, current))
        return refuse(r, "UNTRUSTED_CURRENT", "the current key %s is not endorsed by a trusted key", current);
    return 0;
}

/* Verifies a revocation list; refuses an older one and a license it names. */
int keyward_check_revocation(const char *body, size_t len, const char *sig, const char *kid, const keyward_trust *t,
                             const char *license_key, long long last_seen, long long *version, keyward_refusal *r) {
    cJSON *list = keyward_verify_signed(body, len, sig, kid, t, r), *entry;
    if (!list) return -1;
    int rc = 0;
    *version = (long long)cJSON_GetNumberValue(cJSON_GetObjectItem(list, "version"));
    char normalized[256], digest_hex[65];
    unsigned char digest[32];
    size_t n = 0;
    while (*license_key == ' ' || *license_key == '\t' || *license_key == '\n') license_key++;
    for (; *license_key && n < sizeof normalized - 1; license_key++)
        normalized[n++] = (*license_key >= 'a' && *license_key <= 'z') ? *license_key - 32 : *license_key;
    while (n > 0 && (normalized[n - 1] == ' ' || normalized[n - 1] == '\t' || normalized[n - 1] == '\n')) n--;
    sha256(normalized, n, digest);
    to_hex(digest, 32, digest_hex);
    if (*version < last_seen) {
        rc = refuse(r, "STALE_LIST", "the list is older than the newest one seen", NULL);
    } else {
        cJSON_ArrayForEach(entry, cJSON_GetObjectItem(list, "revoked")) {
            const char *listed = cJSON_GetStringValue(cJSON_GetObjectItem(entry, "keySha256"));
            if (listed && strcmp(listed, digest_hex) == 0) {
                rc = refuse(r, "REVOKED", "the license is %s",
                            cJSON_GetStringValue(cJSON_GetObjectItem(entry, "status")));
                break;
            }
        }
    }
    cJSON_Delete(list);
    return rc;
}

/* ---- CLI (for the tests; not part of the recipe) ------------------------------------------ */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)size + 1);
    *len = fread(data, 1, (size_t)size, f);
    data[*len] = 0;
    fclose(f);
    return data;
}

static int print(cJSON *out, int rc) {
    char *line = cJSON_PrintUnformatted(out);
    puts(line);
    free(line);
    cJSON_Delete(out);
    return rc;
}

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "";
    int args = argc - 2;
    if (!((strcmp(cmd, "file") == 0 && (args == 3 || args == 4)) || (strcmp(cmd, "answer") == 0 && args == 5) ||
          (strcmp(cmd, "rotate") == 0 && args == 2) || (strcmp(cmd, "revoked") == 0 && args == 6))) {
        fprintf(stderr, "usage: see examples/clients/python/keyward_client.py\n");
        return 2;
    }
    const char *clock = getenv("KEYWARD_CLIENT_NOW");
    time_t now = clock && *clock ? parse_time(clock) : time(NULL);
    size_t len;
    char *trust_text = slurp(argv[2], &len), *input = slurp(argv[3], &len);
    cJSON *trust_json = trust_text ? cJSON_Parse(trust_text) : NULL, *item;
    if (!trust_json || !input) {
        fprintf(stderr, "cannot read %s or %s\n", argv[2], argv[3]);
        return 2;
    }
    keyward_trust trust = {.n = 0};
    cJSON_ArrayForEach(item, trust_json) keyward_trust_add(&trust, cJSON_GetStringValue(item));

    keyward_refusal refusal = {0};
    cJSON *out = cJSON_CreateObject();
    cJSON_AddTrueToObject(out, "ok");
    int rc = 0;
    if (strcmp(cmd, "file") == 0) {
        cJSON *payload;
        char kind[8], kid[17];
        rc = keyward_read_file(input, &trust, argv[4], args == 4 ? argv[5] : "", now, &payload, kind, kid, &refusal);
        if (rc == 0) {
            cJSON_AddStringToObject(out, "kind", kind);
            cJSON_AddStringToObject(out, "kid", kid);
            cJSON_AddItemToObject(out, "payload", payload);
        }
    } else if (strcmp(cmd, "answer") == 0) {
        cJSON *body = keyward_verify_answer(input, len, argv[4], argv[5], argv[6], &trust, &refusal);
        rc = body ? 0 : -1;
        cJSON_AddStringToObject(out, "kid", argv[5]);
        cJSON_AddItemToObject(out, "body", body);
    } else if (strcmp(cmd, "rotate") == 0) {
        cJSON *key_list = cJSON_Parse(input), *accepted = cJSON_CreateArray(), *dropped = cJSON_CreateArray();
        rc = keyward_update_trust(&trust, key_list, accepted, dropped, &refusal);
        cJSON *keys = cJSON_AddArrayToObject(out, "trusted");
        for (size_t i = 0; i < trust.n; i++) {
            char b64[45];
            EVP_EncodeBlock((unsigned char *)b64, trust.keys[i].key, 32);
            cJSON_AddItemToArray(keys, cJSON_CreateString(b64));
        }
        cJSON_AddItemToObject(out, "accepted", accepted);
        cJSON_AddItemToObject(out, "dropped", dropped);
        cJSON_Delete(key_list);
    } else {
        long long version;
        rc = keyward_check_revocation(input, len, argv[4], argv[5], &trust, argv[6], atoll(argv[7]), &version,
                                      &refusal);
        cJSON_AddNumberToObject(out, "version", (double)version);
        cJSON_AddFalseToObject(out, "revoked");
    }
    if (rc != 0) {
        cJSON_Delete(out);
        out = cJSON_CreateObject();
        cJSON_AddFalseToObject(out, "ok");
        cJSON_AddStringToObject(out, "error", refusal.code);
        cJSON_AddStringToObject(out, "message", refusal.message);
    }
    return print(out, rc == 0 ? 0 : 1);
}
