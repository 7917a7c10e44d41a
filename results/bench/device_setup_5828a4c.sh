# source .dev/setup.sh on the device: our wheels into /tmp/site, the Rust extension beside the working
# tree's pyphase/ (so the tree's Python code runs, and experiments/ is found), the data, unbuffered output
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
cp /tmp/site/pyphase/_core*.so pyphase/ || exit 1
export PYTHONPATH=$PWD:/tmp/site
export PYPHASE_DATA=$PWD/.dev/data/tinyshakespeare/input.txt
export PYTHONUNBUFFERED=1
