// The part of client.mjs (Node) and browser.mjs (Chromium) that does not depend on where
// it runs: the call spec, the registry built from a FileDescriptorSet at run time (no
// generated code), one call through @connectrpc/connect's createClient, and the result
// object both print or resolve to.
//
// A spec (JSON):
//   baseUrl        "http://127.0.0.1:8080" (the method's path is appended: /pkg.Service/Method)
//   transport      "grpc-web" | "connect" (connect-es); "grpc-web-text" (the official
//                  grpc-web client, browser only: see browser.mjs)
//   binary         true: protobuf payloads (application/grpc-web+proto, application/proto);
//                  false: JSON (application/grpc-web+json, application/json)
//   service        "edgedemo.library.v1.LibraryService"
//   method         "GetBook" (the name in the .proto)
//   request        the request message in proto3 JSON ({"name": "shelves/1/books/2"})
//   requests       client and bidi streaming only: the request messages, a list; these
//                  need HTTP/2 (Node with httpVersion "2"), fetch cannot stream a body
//   headers        {"authorization": "Bearer ..."} (optional)
//   timeoutMs      a deadline sent as grpc-timeout / connect-timeout-ms (optional)
//   maxMessages    server streaming: abort the call after this many messages (optional;
//                  the result then has aborted: true, ok: true and no trailers)
//   useHttpGet     connect only: send unary calls of NO_SIDE_EFFECTS methods as GET
//                  (connect-es's transport option; other methods still POST)
//   descriptorSet  the FileDescriptorSet: a file path (Node only), or
//   descriptorSetBase64  the same bytes in base64
//
// The result (one JSON object):
//   {ok, messages: [proto3 JSON...], headers: {...}, trailers: {...}, aborted,
//    error: null | {code: "not_found", numericCode: 5, message, details: [{type, value}],
//                   metadata: {...}, cause}}
// Header names are lower case; repeated headers are joined with ", " (the fetch Headers
// rule). `details` values are base64 of the detail message's bytes (google.rpc.BadRequest
// and the like: decode them in the test). On an error, the response's headers and
// trailers are in error.metadata (connect-es leaves headers and trailers empty for a
// failed unary call). `cause` is the text of an error the client wrapped (a refused
// connection, for one); an error the server sent has none.

import { createClient, ConnectError, Code } from '@connectrpc/connect';
import { codeToString } from '@connectrpc/connect/protocol-connect';
import { createFileRegistry, fromBinary, fromJson, toJson } from '@bufbuild/protobuf';
import { base64Decode, base64Encode } from '@bufbuild/protobuf/wire';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';

const registries = new Map();

/** A registry of every file in the set (cached by the set's base64 text). */
export function registryFromBase64(text) {
  let registry = registries.get(text);
  if (registry === undefined) {
    registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, base64Decode(text)));
    registries.set(text, registry);
  }
  return registry;
}

export function registryFromBytes(bytes) {
  return registryFromBase64(base64Encode(bytes));
}

/** The DescMethod the spec names; throws with what the registry does have. */
export function findMethod(registry, spec) {
  const service = registry.getService(spec.service);
  if (service === undefined) {
    throw new Error(`service ${spec.service} is not in the descriptor set`);
  }
  const method = service.methods.find((m) => m.name === spec.method);
  if (method === undefined) {
    const names = service.methods.map((m) => m.name).join(', ');
    throw new Error(`${spec.service} has no method ${spec.method} (it has ${names})`);
  }
  return method;
}

export function headersObject(headers) {
  const out = {};
  if (headers) {
    headers.forEach((value, key) => {
      out[key.toLowerCase()] = value;
    });
  }
  return out;
}

export function errorObject(error) {
  const connectError = ConnectError.from(error);
  const cause = connectError.cause;
  return {
    code: codeToString(connectError.code),
    numericCode: connectError.code,
    message: connectError.rawMessage,
    details: connectError.details
      .filter((d) => d.value instanceof Uint8Array)
      .map((d) => ({ type: d.type, value: base64Encode(d.value) })),
    metadata: headersObject(connectError.metadata),
    cause: cause === undefined || cause === error ? null : String(cause),
  };
}

function requestsOf(spec) {
  if (!Array.isArray(spec.requests)) {
    throw new Error(`${spec.service}.${spec.method} streams its requests: the spec needs requests (a list)`);
  }
  return spec.requests;
}

async function* iterate(messages) {
  yield* messages;
}

/**
 * Make the call the spec describes over `transport` (a connect-es Transport) and return
 * the result object. A failed call does not throw (its error is in the result); a spec
 * that names no such method, or a request that is not valid proto3 JSON for it, does.
 */
export async function callWithTransport(transport, registry, spec) {
  const method = findMethod(registry, spec);
  const client = createClient(method.parent, transport);
  const result = { ok: false, messages: [], headers: {}, trailers: {}, error: null, aborted: false };
  const abort = new AbortController();
  const options = {
    headers: spec.headers ?? {},
    timeoutMs: spec.timeoutMs,
    signal: abort.signal,
    onHeader: (headers) => {
      result.headers = headersObject(headers);
    },
    onTrailer: (trailers) => {
      result.trailers = headersObject(trailers);
    },
  };
  const json = { registry };
  const kind = method.methodKind;
  const streamingRequest = kind === 'client_streaming' || kind === 'bidi_streaming';
  // a bad spec throws here, before the call
  const input = streamingRequest
    ? requestsOf(spec).map((one) => fromJson(method.input, one, json))
    : fromJson(method.input, spec.request ?? {}, json);
  const call = client[method.localName];
  try {
    if (kind === 'unary' || kind === 'client_streaming') {
      const reply = await call(streamingRequest ? iterate(input) : input, options);
      result.messages.push(toJson(method.output, reply, json));
    } else {
      for await (const reply of call(streamingRequest ? iterate(input) : input, options)) {
        result.messages.push(toJson(method.output, reply, json));
        if (spec.maxMessages !== undefined && result.messages.length >= spec.maxMessages) {
          result.aborted = true;
          abort.abort();
          break;
        }
      }
    }
    result.ok = true;
  } catch (error) {
    result.error = errorObject(error);
  }
  return result;
}

/** Options every connect-es transport takes, from the spec. */
export function transportOptions(registry, spec) {
  return {
    baseUrl: spec.baseUrl,
    useBinaryFormat: spec.binary !== false,
    useHttpGet: spec.useHttpGet === true,
    jsonOptions: { registry },
  };
}

/** A result for a spec that could not even start (bad JSON, an unknown method...). */
export function failedResult(error, code = Code.InvalidArgument) {
  return {
    ok: false,
    messages: [],
    headers: {},
    trailers: {},
    aborted: false,
    error: {
      code: codeToString(code),
      numericCode: code,
      message: `bad spec: ${error instanceof Error ? error.message : String(error)}`,
      details: [],
      metadata: {},
      cause: null,
    },
  };
}
