// The browser side: bundled by build.mjs (esbuild) into bundle.js, which a page loads with
// <script src="bundle.js">. It defines
//
//   window.edgeCall(spec) -> Promise<result>
//
// with the spec and result of core.mjs, the descriptor set always as descriptorSetBase64.
// Transports:
//   "grpc-web"       @connectrpc/connect-web's createGrpcWebTransport (fetch):
//                    binary true -> application/grpc-web+proto, false -> application/grpc-web+json
//   "connect"        @connectrpc/connect-web's createConnectTransport (fetch):
//                    binary true -> application/proto (streams application/connect+proto),
//                    false -> application/json (streams application/connect+json)
//   "grpc-web-text"  the official grpc-web client (XMLHttpRequest), format "text":
//                    application/grpc-web-text, base64 bodies; connect-es has no text mode.
//                    binary true here switches it to its format "binary"
//                    (application/grpc-web+proto, which that client does not stream).
// The promise never rejects for a failed call; a spec it cannot use gives ok false with a
// "client.mjs:" message, as in Node.

import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-web';
import { ConnectError, Code } from '@connectrpc/connect';
import { findTrailerError } from '@connectrpc/connect/protocol-grpc';
import { fromBinary, fromJson, toBinary, toJson } from '@bufbuild/protobuf';
import { GrpcWebClientBase, MethodDescriptor, MethodType } from 'grpc-web';
import { callWithTransport, errorObject, failedResult, findMethod, registryFromBase64, transportOptions } from './core.mjs';

function headersOf(metadata) {
  const headers = new Headers();
  for (const [key, value] of Object.entries(metadata ?? {})) {
    headers.append(key, String(value));
  }
  return headers;
}

function lowerKeys(metadata) {
  const out = {};
  for (const [key, value] of Object.entries(metadata ?? {})) {
    out[key.toLowerCase()] = String(value);
  }
  return out;
}

/** One call with the official grpc-web client (text, or its binary format). */
function callWithGrpcWeb(registry, spec) {
  const method = findMethod(registry, spec);
  if (method.methodKind !== 'unary' && method.methodKind !== 'server_streaming') {
    throw new Error(`${spec.service}.${spec.method} is ${method.methodKind}: the grpc-web client does unary and server streaming only`);
  }
  const json = { registry };
  const request = fromJson(method.input, spec.request ?? {}, json);
  const client = new GrpcWebClientBase({ format: spec.binary === true ? 'binary' : 'text' });
  const path = `/${method.parent.typeName}/${method.name}`;
  const descriptor = new MethodDescriptor(
    path,
    method.methodKind === 'unary' ? MethodType.UNARY : MethodType.SERVER_STREAMING,
    Object,
    Object,
    (message) => toBinary(method.input, message),
    (bytes) => fromBinary(method.output, bytes),
  );
  const metadata = { ...(spec.headers ?? {}) };
  if (spec.timeoutMs !== undefined) {
    metadata.deadline = String(Date.now() + spec.timeoutMs); // sent as grpc-timeout
  }
  const url = spec.baseUrl.replace(/\/+$/, '') + path;
  const result = { ok: false, messages: [], headers: {}, trailers: {}, error: null, aborted: false };
  return new Promise((resolve) => {
    let settled = false;
    const finish = (error) => {
      if (settled) return;
      settled = true;
      if (error === null) {
        result.ok = true;
      } else {
        // error: {code, message, metadata} (an RpcError). Its metadata holds the trailers;
        // read grpc-status-details-bin the way connect-es does, when it is there.
        const trailers = headersOf(error.metadata);
        if (!trailers.has('grpc-status')) {
          trailers.set('grpc-status', String(error.code));
          trailers.set('grpc-message', encodeURIComponent(error.message ?? ''));
        }
        let connectError = null;
        try {
          connectError = findTrailerError(trailers) ?? null;
        } catch {
          connectError = null;
        }
        const fromClient = new ConnectError(error.message ?? '', error.code ?? Code.Unknown, trailers);
        result.error = errorObject(connectError ?? fromClient);
        result.error.metadata = lowerKeys(error.metadata);
      }
      // let the 'status' listener run first when 'end' or the callback came before it
      setTimeout(() => resolve(result), 0);
    };
    let stream;
    if (method.methodKind === 'unary') {
      stream = client.rpcCall(url, request, metadata, descriptor, (error, reply) => {
        if (error) {
          finish(error);
        } else {
          result.messages.push(toJson(method.output, reply, json));
          finish(null);
        }
      });
    } else {
      stream = client.serverStreaming(url, request, metadata, descriptor);
      stream.on('data', (reply) => {
        if (settled) return; // the rest of a chunk read before the cancel
        result.messages.push(toJson(method.output, reply, json));
        if (spec.maxMessages !== undefined && result.messages.length >= spec.maxMessages) {
          result.aborted = true;
          stream.cancel();
          finish(null);
        }
      });
      stream.on('error', (error) => finish(error));
      stream.on('end', () => finish(null));
    }
    stream.on('metadata', (headers) => {
      result.headers = lowerKeys(headers);
    });
    stream.on('status', (status) => {
      result.trailers = lowerKeys(status.metadata);
    });
  });
}

function transportOf(registry, spec) {
  const options = transportOptions(registry, spec);
  switch (spec.transport) {
    case 'grpc-web':
      return createGrpcWebTransport(options);
    case 'connect':
      return createConnectTransport(options);
    default:
      throw new Error(`unknown transport ${JSON.stringify(spec.transport)} (grpc-web, grpc-web-text or connect)`);
  }
}

async function edgeCall(spec) {
  try {
    if (spec.descriptorSetBase64 === undefined) {
      throw new Error('the spec needs descriptorSetBase64 in the browser');
    }
    const registry = registryFromBase64(spec.descriptorSetBase64);
    if (spec.transport === 'grpc-web-text') {
      return await callWithGrpcWeb(registry, spec);
    }
    return await callWithTransport(transportOf(registry, spec), registry, spec);
  } catch (error) {
    return failedResult(error);
  }
}

window.edgeCall = edgeCall;
