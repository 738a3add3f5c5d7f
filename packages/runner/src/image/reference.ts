// Parses and formats image references with Docker's rules (github.com/distribution/reference:
// regexp.go for the grammar, normalize.go for the docker.io and library/ defaults).
import { InvalidReferenceError } from './errors.js';

/** A fully qualified image reference. */
export interface ImageReference {
  /** Registry host with optional port, e.g. `docker.io`, `ghcr.io`, `127.0.0.1:5000`, `[::1]:5000`. */
  registry: string;
  /** Repository path inside the registry, e.g. `library/ubuntu`, `devcontainers/base`. Always lowercase. */
  repository: string;
  /** Tag, e.g. `22.04`; `latest` when the reference names neither tag nor digest. */
  tag: string | undefined;
  /** Content digest `algorithm:hex`, e.g. `sha256:…`; when set it wins over the tag for pulling. */
  digest: string | undefined;
}

/** Docker Hub's canonical name in references (normalize.go `defaultDomain`). */
export const DOCKER_HUB = 'docker.io';

const NAME_TOTAL_LENGTH_MAX = 255;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN =
  /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
const TAG = /^\w[\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/;
const SHA512_DIGEST = /^sha512:[0-9a-f]{128}$/;

/**
 * Parses a reference the way `docker pull` does: `ubuntu` → `docker.io/library/ubuntu:latest`,
 * `user/app:1` → `docker.io/user/app:1`, `127.0.0.1:5000/app@sha256:…`, `localhost/app`, `[::1]:5000/app`.
 * The first path component is a registry when it contains `.` or `:`, is `localhost`, or has an
 * uppercase letter (normalize.go `splitDockerDomain`). `index.docker.io` becomes `docker.io`.
 * Digests must be `sha256` (64 hex) or `sha512` (128 hex), the algorithms the OCI image spec registers.
 * @throws {InvalidReferenceError} on anything outside the grammar, including uppercase repositories,
 *   names over 255 characters and a bare 64-hex image ID.
 */
export function parseReference(text: string): ImageReference {
  const fail = (detail: string): never => {
    throw new InvalidReferenceError(text, detail);
  };
  if (text === '') fail('empty reference');
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) fail(`invalid digest "${digest}"`);
    if (!SHA256_DIGEST.test(digest) && !SHA512_DIGEST.test(digest)) fail(`unsupported digest "${digest}" (sha256 or sha512 hex expected)`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail(`invalid tag "${tag}"`);
  }
  if (rest === '') fail('empty repository name');
  if (/^[a-f0-9]{64}$/.test(rest)) fail('a 64-hex image ID is not a repository name');

  let registry = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (/[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first) {
      registry = first;
      repository = rest.slice(slash + 1);
      if (!DOMAIN.test(registry)) fail(`invalid registry "${registry}"`);
    }
  }
  if (registry === 'index.docker.io') registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (repository.toLowerCase() !== repository) fail('repository name must be lowercase');
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT.test(component)) fail(`invalid repository path component "${component}"`);
  }
  if (registry.length + 1 + repository.length > NAME_TOTAL_LENGTH_MAX) fail(`name longer than ${NAME_TOTAL_LENGTH_MAX} characters`);
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, repository, tag, digest };
}

/** Returns `registry/repository`, e.g. `docker.io/library/ubuntu`. */
export function referenceName(reference: ImageReference): string {
  return `${reference.registry}/${reference.repository}`;
}

/**
 * Formats the canonical string of a reference: `docker.io/library/ubuntu:latest`,
 * `ghcr.io/a/b@sha256:…`, or `name:tag@digest` when both are set. `parseReference` of the result
 * returns an equal reference.
 */
export function formatReference(reference: ImageReference): string {
  let text = referenceName(reference);
  if (reference.tag !== undefined) text += `:${reference.tag}`;
  if (reference.digest !== undefined) text += `@${reference.digest}`;
  return text;
}

/**
 * The canonical string under which an image is found again: by digest when the reference has one
 * (`name@digest`, the tag is then only informational), else `name:tag`.
 */
export function lookupKey(reference: ImageReference): string {
  return reference.digest !== undefined ? `${referenceName(reference)}@${reference.digest}` : formatReference(reference);
}
