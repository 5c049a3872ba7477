// One gRPC-Web or Connect call from Node, with @connectrpc/connect-node's transports:
//
//   node client.mjs '<json spec>'      or      echo '<json spec>' | node client.mjs -
//
// The spec and the one JSON line printed on stdout are described in core.mjs. Node only
// adds, to the spec:
//   descriptorSet  a path to a binary FileDescriptorSet (or descriptorSetBase64)
//   httpVersion    "1.1" (default) or "2" (h2c with prior knowledge on http://, ALPN on https://)
//   caFile         a PEM file to trust, for an https:// baseUrl
//
// Exit status: 0 when a result was printed (a failed call is still a result: ok false);
// 2 when the spec itself is wrong (the printed result says why). "grpc-web-text" is not
// available here: connect-es does not implement it, and the official grpc-web client
// needs XMLHttpRequest (use browser.mjs).

import { readFileSync } from 'node:fs';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { callWithTransport, failedResult, registryFromBase64, registryFromBytes, transportOptions } from './core.mjs';

function readSpec() {
  const argument = process.argv[2];
  const text = argument === undefined || argument === '-' ? readFileSync(0, 'utf8') : argument;
  return JSON.parse(text);
}

function registryOf(spec) {
  if (spec.descriptorSetBase64 !== undefined) {
    return registryFromBase64(spec.descriptorSetBase64);
  }
  if (spec.descriptorSet !== undefined) {
    return registryFromBytes(new Uint8Array(readFileSync(spec.descriptorSet)));
  }
  throw new Error('the spec needs descriptorSet (a path) or descriptorSetBase64');
}

function transportOf(registry, spec) {
  const nodeOptions = spec.caFile === undefined ? {} : { ca: readFileSync(spec.caFile) };
  const options = {
    ...transportOptions(registry, spec),
    httpVersion: spec.httpVersion ?? '1.1',
    nodeOptions,
  };
  switch (spec.transport) {
    case 'grpc-web':
      return createGrpcWebTransport(options);
    case 'connect':
      return createConnectTransport(options);
    case 'grpc-web-text':
      throw new Error('grpc-web-text runs in the browser only (browser.mjs, the official grpc-web client)');
    default:
      throw new Error(`unknown transport ${JSON.stringify(spec.transport)} (grpc-web or connect)`);
  }
}

async function main() {
  let registry;
  let transport;
  let spec;
  try {
    spec = readSpec();
    registry = registryOf(spec);
    transport = transportOf(registry, spec);
  } catch (error) {
    return [failedResult(error), 2];
  }
  try {
    return [await callWithTransport(transport, registry, spec), 0];
  } catch (error) {
    return [failedResult(error), 2];
  }
}

const [result, status] = await main();
process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(status));
