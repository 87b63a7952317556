# What test_run.sh and test_run_stops.sh share: the key, an Atlas batch, the mock's URL.
KEY="sk-test-$$-SECRETVALUE"
export ATLASCLOUD_API_KEY="$KEY"

# A batch of N jobs over N distinct product images plus one shared logo.
make_batch() { # make_batch DIR N [extra manifest lines...]
    local d=$1 n=$2; shift 2
    mkdir -p "$d/img"
    "$GEN_IMAGE" png 48 48 "$d/img/logo.png" 99
    for i in $(seq 1 "$n"); do "$GEN_IMAGE" jpeg 64 80 "$d/img/p$i.jpg" "$i"; done
    {
        echo "version: 1"
        echo "provider: atlascloud"
        echo "model: bytedance/seedream-v5.0-lite/edit-sequential"
        echo "output_dir: out"
        echo "defaults: {max_images: 2, output_format: png}"
        echo "limits: {concurrency: 8, requests_per_second: 0, poll_interval: 200ms, max_attempts: 8}"
        for l in "$@"; do echo "$l"; done
        echo "jobs:"
        echo "  - foreach: \"img/p*.jpg\""
        echo "    id: \"job-{stem}\""
        echo "    prompt: \"Edit {name} for the catalogue\""
        echo "    images: [\"{path}\", img/logo.png]"
    } > "$d/m.yaml"
}
use_mock() { export ATLASCLOUD_BASE_URL="$MOCK_URL/api/v1"; }

