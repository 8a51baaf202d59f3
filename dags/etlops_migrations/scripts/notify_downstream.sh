#!/bin/sh
# Tells downstream consumers that the orders schema moved. The demo only logs it; a real
# script would call an API or post to a channel. Runs without a shell around it, from the
# migrations folder, with ETLOPS_PIPELINE, ETLOPS_MIGRATION_FROM/TO and ETLOPS_MIGRATION_RUN_ID set.
echo "notify downstream: ${ETLOPS_PIPELINE} is now at version $1 (run ${ETLOPS_MIGRATION_RUN_ID})"
