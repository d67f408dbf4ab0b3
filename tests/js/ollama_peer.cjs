// Drives an Ollama-compatible server with the official `ollama` JavaScript client (ollama-js, a peer
// we did not write) and prints what it got as one JSON object:
//   node ollama_peer.cjs MODULES_DIR HOST PROMPT MODE
// MODE: "stream" (generate, streamed), "single" (generate, stream:false), "chat-stream", "list",
// "show" (details of "tiny"), "ps".
// Output: {"parts": [response pieces], "done": whether a part with done:true arrived,
//          "response": the whole text, "error": the error message or null}.
const path = require('path');
const [modules, host, prompt, mode] = process.argv.slice(2);
const { Ollama } = require(path.join(modules, 'ollama'));

async function main() {
  const c = new Ollama({ host });
  const out = { parts: [], done: false, response: '', error: null };
  const options = { num_predict: 64 };
  try {
    if (mode === 'stream' || mode === 'chat-stream') {
      const stream = mode === 'stream'
        ? await c.generate({ model: 'tiny:latest', prompt, stream: true, options })
        : await c.chat({ model: 'tiny:latest', messages: [{ role: 'user', content: prompt }], stream: true, options });
      for await (const part of stream) {
        const text = mode === 'stream' ? part.response : part.message.content;
        out.parts.push(text);
        out.response += text;
        if (part.done) out.done = true;
      }
    } else if (mode === 'single') {
      const r = await c.generate({ model: 'tiny:latest', prompt, stream: false, options });
      out.response = r.response;
      out.done = r.done === true;
    } else if (mode === 'show') {
      const r = await c.show({ model: 'tiny' });
      out.parts = [r.details.family, (r.capabilities || []).join(',')];
      out.done = true;
    } else if (mode === 'ps') {
      const r = await c.ps();
      out.parts = r.models.map((m) => m.model);
      out.done = true;
    } else if (mode === 'list') {
      const r = await c.list();
      out.parts = r.models.map((m) => m.model);
      out.done = true;
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  } catch (e) {
    out.error = String(e && e.message ? e.message : e);
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
main();
