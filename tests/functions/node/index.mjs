// SPDX-License-Identifier: MIT
// A Kinesis-triggered Lambda handler as people write them, unchanged for
// spate: Powertools for AWS Lambda's batch utility builds the
// batchItemFailures answer. A record whose data starts with "bad" throws
// (so it is reported failed); every record handled is appended to $OUT as
// "<partitionKey> <sequenceNumber> <data>" for tests/functions.sh.
import { appendFileSync } from 'node:fs';
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';

const processor = new BatchProcessor(EventType.KinesisDataStreams);

const recordHandler = async (record) => {
  const data = Buffer.from(record.kinesis.data, 'base64').toString('utf8');
  if (data.startsWith('bad')) throw new Error(`poison record ${data}`);
  appendFileSync(process.env.OUT,
    `${record.kinesis.partitionKey} ${record.kinesis.sequenceNumber} ${data}\n`);
};

export const handler = async (event, context) =>
  processPartialResponse(event, recordHandler, processor, { context });
