#!/usr/bin/env node
// Keyward client recipe (Node 18+, built-in `crypto`): offline license and machine files,
// signed answers, key rotation and revocation lists. Paste the part above `---- CLI` into
// your app. The CLI's usage is the Python recipe's (examples/clients/python/keyward_client.py).
import { createDecipheriv, createHash, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';

const CLOCK_SKEW_MS = 5 * 60 * 1000;
// The fixed DER header of an Ed25519 public key (SubjectPublicKeyInfo), before its 32 bytes.
const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex');

export class Refused extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export const kidOf = (publicKey) =>
  createHash('sha256').update(publicKey).digest('hex').slice(0, 16);

/** Map kid → raw public key, from base64 keys. */
export const trustSet = (keysB64) =>
  new Map(keysB64.map((b64) => Buffer.from(b64, 'base64')).map((raw) => [kidOf(raw), raw]));

function verifies(publicKey, signatureB64, message) {
  try {
    const key = createPublicKey({
      key: Buffer.concat([ED25519_SPKI, publicKey]),
      format: 'der',
      type: 'spki',
    });
    return verify(null, message, key, Buffer.from(signatureB64, 'base64'));
  } catch {
    return false;
  }
}

/** Verifies, decrypts and dates a license or machine file; returns {kind, kid, payload}. */
export function readFile(text, trusted, licenseKey, fingerprint = '', now = new Date()) {
  const lines = text.trim().split(/\r?\n/);
  const kind = {
    '-----BEGIN LICENSE FILE-----': 'license',
    '-----BEGIN MACHINE FILE-----': 'machine',
  }[lines[0].trim()];
  if (!kind || lines.at(-1).trim() !== `-----END ${kind.toUpperCase()} FILE-----`) {
    throw new Refused('MALFORMED', 'not a license or machine file');
  }
  let outer;
  try {
    outer = JSON.parse(Buffer.from(lines.slice(1, -1).join(''), 'base64').toString());
  } catch {
    throw new Refused('MALFORMED', "the file's body is not base64 JSON");
  }
  const { enc, sig, alg } = outer;
  if (typeof enc !== 'string' || typeof sig !== 'string')
    throw new Refused('MALFORMED', 'no enc or sig');
  if (alg !== 'aes-256-gcm+ed25519' && alg !== 'base64+ed25519') {
    throw new Refused('UNSUPPORTED_ALG', `unsupported algorithm ${alg}`);
  }
  // Keygen's own files name no key: any trusted key may have signed them.
  if (outer.kid != null && !trusted.has(outer.kid)) {
    throw new Refused(
      'UNKNOWN_KID',
      `signed by key ${outer.kid}, which is not trusted: update the trust set`,
    );
  }
  const candidates = outer.kid != null ? [outer.kid] : [...trusted.keys()];
  const message = Buffer.from(`${kind}/${enc}`);
  const kid = candidates.find((k) => verifies(trusted.get(k), sig, message));
  if (!kid) throw new Refused('BAD_SIGNATURE', 'the signature does not verify with a trusted key');
  let payload;
  try {
    let plaintext;
    if (alg === 'base64+ed25519') {
      plaintext = Buffer.from(enc, 'base64');
    } else {
      const [ciphertext, iv, tag] = enc.split('.').map((p) => Buffer.from(p, 'base64'));
      const aesKey = createHash('sha256')
        .update(licenseKey + fingerprint)
        .digest();
      const decipher = createDecipheriv('aes-256-gcm', aesKey, iv);
      decipher.setAuthTag(tag);
      plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    }
    payload = JSON.parse(plaintext.toString());
  } catch {
    throw new Refused(
      'UNDECRYPTABLE',
      'the file does not decrypt with this license key and fingerprint',
    );
  }
  const issued = Date.parse(payload.meta?.issued);
  const ttl = payload.meta?.ttl;
  if (Number.isNaN(issued)) throw new Refused('MALFORMED', 'no meta.issued');
  // An unencrypted file opens with any key: only its contents say whose it is.
  if (payload.data?.attributes?.key !== licenseKey) {
    throw new Refused('WRONG_LICENSE', 'the file is about another license');
  }
  const machines = (payload.included ?? []).filter((i) => i.type === 'machines');
  if (kind === 'machine' && !machines.some((m) => m.attributes?.fingerprint === fingerprint)) {
    throw new Refused('WRONG_MACHINE', 'the file is about another machine');
  }
  if (issued > now.getTime() + CLOCK_SKEW_MS) {
    throw new Refused('NOT_YET_VALID', 'the file is issued in the future: is the clock wrong?');
  }
  if (ttl != null && now.getTime() > issued + ttl * 1000) {
    throw new Refused('EXPIRED', "the file's TTL has passed: check out a new one");
  }
  return { kind, kid, payload };
}

/** An answer's X-Signature over its exact body bytes, by the key X-Keyward-Key-Id names. */
export function verifySigned(body, signatureB64, kid, trusted) {
  if (!trusted.has(kid))
    throw new Refused('UNKNOWN_KID', `signed by key ${kid}, which is not trusted`);
  if (!verifies(trusted.get(kid), signatureB64, body)) {
    throw new Refused('BAD_SIGNATURE', 'the signature does not verify over the body');
  }
  return JSON.parse(body.toString());
}

export function verifyAnswer(body, signatureB64, kid, nonce, trusted) {
  const answer = verifySigned(body, signatureB64, kid, trusted);
  if (answer.nonce !== nonce) {
    throw new Refused(
      'NONCE_MISMATCH',
      "the answer does not carry this request's nonce: a replay?",
    );
  }
  return answer;
}

/** Follows rotations in a public-key answer ({keys:[…]}): a listed key is trusted only if its
 * endorsement verifies with a key already trusted; retired keys are dropped. */
export function updateTrust(trustedIn, keyList) {
  const trusted = new Map(trustedIn);
  const accepted = [];
  const keys = keyList.keys ?? [];
  for (let endorsed = true; endorsed; ) {
    endorsed = false; // until nothing new: chains A → B → C work
    for (const entry of keys) {
      const raw = Buffer.from(entry.publicKey, 'base64');
      const kid = kidOf(raw);
      const e = entry.endorsement;
      if (trusted.has(kid) || !e || !trusted.has(e.kid) || entry.kid !== kid) continue;
      if (
        verifies(
          trusted.get(e.kid),
          e.signature,
          Buffer.from(`keyward-key-endorsement/${entry.publicKey}`),
        )
      ) {
        trusted.set(kid, raw);
        accepted.push(kid);
        endorsed = true;
      }
    }
  }
  const retired = new Set(
    keys.filter((e) => e.retired).map((e) => kidOf(Buffer.from(e.publicKey, 'base64'))),
  );
  const dropped = [...trusted.keys()].filter((kid) => retired.has(kid));
  for (const kid of dropped) trusted.delete(kid);
  if (!trusted.has(keyList.kid)) {
    throw new Refused(
      'UNTRUSTED_CURRENT',
      `the current key ${keyList.kid} is not endorsed by a trusted key`,
    );
  }
  return { trusted, accepted, dropped };
}

/** Verifies a revocation list; refuses an older one and a license it names. Returns its version. */
export function checkRevocation(body, signatureB64, kid, trusted, licenseKey, lastSeenVersion) {
  const list = verifySigned(body, signatureB64, kid, trusted);
  if (list.version < lastSeenVersion) {
    throw new Refused(
      'STALE_LIST',
      `list version ${list.version} is older than ${lastSeenVersion}`,
    );
  }
  const digest = createHash('sha256').update(licenseKey.trim().toUpperCase()).digest('hex');
  const entry = list.revoked.find((e) => e.keySha256 === digest);
  if (entry) throw new Refused('REVOKED', `the license is ${entry.status}`);
  return list.version;
}

// ---- CLI (for the tests; not part of the recipe) -------------------------------------------

function main(argv) {
  const [command, ...args] = argv;
  const arity = { file: [3, 4], answer: [5, 5], rotate: [2, 2], revoked: [6, 6] }[command];
  if (!arity || args.length < arity[0] || args.length > arity[1]) {
    console.error('usage: see examples/clients/python/keyward_client.py');
    return 2;
  }
  const now = process.env.KEYWARD_CLIENT_NOW
    ? new Date(process.env.KEYWARD_CLIENT_NOW)
    : new Date();
  const trusted = trustSet(JSON.parse(readFileSync(args[0], 'utf8')));
  let out;
  try {
    if (command === 'file') {
      const { kind, kid, payload } = readFile(
        readFileSync(args[1], 'utf8'),
        trusted,
        args[2],
        args[3] ?? '',
        now,
      );
      out = { ok: true, kind, kid, payload };
    } else if (command === 'answer') {
      out = {
        ok: true,
        kid: args[3],
        body: verifyAnswer(readFileSync(args[1]), args[2], args[3], args[4], trusted),
      };
    } else if (command === 'rotate') {
      const {
        trusted: next,
        accepted,
        dropped,
      } = updateTrust(trusted, JSON.parse(readFileSync(args[1], 'utf8')));
      out = {
        ok: true,
        trusted: [...next.values()].map((k) => k.toString('base64')),
        accepted,
        dropped,
      };
    } else {
      const version = checkRevocation(
        readFileSync(args[1]),
        args[2],
        args[3],
        trusted,
        args[4],
        Number(args[5]),
      );
      out = { ok: true, version, revoked: false };
    }
  } catch (e) {
    if (!(e instanceof Refused)) throw e;
    console.log(JSON.stringify({ ok: false, error: e.code, message: e.message }));
    return 1;
  }
  console.log(JSON.stringify(out));
  return 0;
}

process.exitCode = main(process.argv.slice(2));
