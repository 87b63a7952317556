# What test_paytwice.sh and test_ledger.sh share: an Atlas batch of one-image jobs over
# remote images, whose charges are easy to count, and the mock's URL for it.
remote_batch() { # remote_batch DIR N MAX_COST CONCURRENCY [PROMPT]: N one-image jobs at $0.032 an image
    local d=$1 n=$2 cost=$3 conc=$4 p=${5:-job}
    mkdir -p "$d"
    {
        echo "version: 1"
        echo "provider: atlascloud"
        echo "model: bytedance/seedream-v5.0-lite/edit-sequential"
        echo "output_dir: out"
        echo "defaults: {max_images: 1, output_format: png}"
        echo "limits: {concurrency: $conc, requests_per_second: 0, poll_interval: 100ms, max_attempts: 6, max_cost: $cost}"
        echo "jobs:"
        for i in $(seq 1 "$n"); do echo "  - {id: j$i, prompt: \"$p $i\", images: [\"https://cdn.example.com/$i.png\"]}"; done
    } > "$d/m.yaml"
}
use_mock() { export ATLASCLOUD_BASE_URL="$MOCK_URL"; }
