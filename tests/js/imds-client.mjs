// Prints what the AWS SDK for JavaScript v3 gets from IMDS, as JSON on one line.
// Usage: node imds-client.mjs instance|chain|region
import { fromInstanceMetadata, fromNodeProviderChain } from "@aws-sdk/credential-providers";
import { MetadataService } from "@aws-sdk/ec2-metadata-service";

const mode = process.argv[2];
try {
  if (mode === "region") {
    const service = new MetadataService({ endpoint: process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT });
    const region = await service.request("/latest/meta-data/placement/region", {});
    console.log(JSON.stringify({ region }));
  } else {
    const provider = mode === "chain"
      ? fromNodeProviderChain()
      : fromInstanceMetadata({ timeout: 1000, maxRetries: 1 });
    const creds = await provider();
    console.log(JSON.stringify({
      accessKeyId: creds.accessKeyId,
      expiration: creds.expiration ? creds.expiration.toISOString() : null,
    }));
  }
} catch (err) {
  console.error(`${err.name}: ${err.message}`);
  process.exit(1);
}
