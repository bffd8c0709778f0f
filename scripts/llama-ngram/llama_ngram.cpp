// Greedy generation with llama.cpp's n-gram speculative drafters (common/speculative.cpp, as
// llama-server's --spec-type ngram-* uses them) or none, over the prompts of a JSON file: one JSON
// line per prompt with the tokens, their ids, the decode time and the drafts' acceptance.
//
// Usage: llama-ngram MODEL PROMPTS.json MAX_TOKENS TYPE [THREADS]
//   TYPE: none, or a name llama.cpp's --spec-type takes (ngram-simple, ngram-map-k, ngram-mod, ...),
//   for ngram-simple and ngram-map-k optionally with :N:M, the lookup and drafted lengths
//
// The loop is llama.cpp's greedy draft-and-verify (as in its speculative-simple example, whose
// source the vendored tree does not carry): decode the last token and the draft in one batch,
// accept the draft while it equals the target's argmax, drop the rest from the KV cache.

#include "common.h"
#include "speculative.h"
#include "llama.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

using json = nlohmann::json;

static llama_token argmax(llama_context * ctx, int i, int n_vocab) {
    const float * logits = llama_get_logits_ith(ctx, i);
    int best = 0;
    for (int t = 1; t < n_vocab; ++t) {
        if (logits[t] > logits[best]) {
            best = t;
        }
    }
    return best;
}

// The prompt as Canopy's bench renders it: one user message in the model's chat template,
// tokenized with special tokens, a doubled BOS dropped.
static std::vector<llama_token> chat_tokens(const llama_model * model, const std::string & text) {
    const llama_vocab * vocab = llama_model_get_vocab(model);
    llama_chat_message msg = {"user", text.c_str()};
    const char * tmpl = llama_model_chat_template(model, nullptr);
    std::vector<char> buf(text.size() * 2 + 4096);
    int n = llama_chat_apply_template(tmpl, &msg, 1, true, buf.data(), buf.size());
    if (n > (int) buf.size()) {
        buf.resize(n);
        n = llama_chat_apply_template(tmpl, &msg, 1, true, buf.data(), buf.size());
    }
    std::string rendered(buf.data(), n);
    std::vector<llama_token> tokens(rendered.size() + 8);
    int k = llama_tokenize(vocab, rendered.c_str(), rendered.size(), tokens.data(), tokens.size(),
                           true, true);
    tokens.resize(k);
    if (tokens.size() >= 2 && tokens[0] == tokens[1] && tokens[0] == llama_vocab_bos(vocab)) {
        tokens.erase(tokens.begin());
    }
    return tokens;
}

int main(int argc, char ** argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL PROMPTS.json MAX_TOKENS TYPE [THREADS]\n", argv[0]);
        return 2;
    }
    const std::string type_name = argv[4];
    const int max_tokens = std::stoi(argv[3]);
    const int threads = argc > 5 ? std::stoi(argv[5]) : 2;
    std::ifstream f(argv[2]);
    const json prompts = json::parse(f);

    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    ggml_backend_load_all();
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        fprintf(stderr, "could not load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    for (size_t p = 0; p < prompts.size(); ++p) {
        const json & entry = prompts[p];
        const auto prompt = chat_tokens(
            model, entry.is_string() ? entry.get<std::string>() : entry.at("prompt").get<std::string>());
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = 4096;
        cp.n_batch = 512;
        cp.n_ubatch = 512;
        cp.n_threads = threads;
        cp.n_threads_batch = threads;
        llama_context * ctx = llama_init_from_model(model, cp);

        common_params_speculative sp;
        common_speculative * spec = nullptr;
        if (type_name != "none") {
            // TYPE[:N:M]: the lookup n-gram and the drafted m-gram of ngram-simple and
            // ngram-map-k (llama-server's --spec-ngram-*-size-n and -size-m); else the defaults.
            const size_t colon = type_name.find(':');
            const std::string kind = type_name.substr(0, colon);
            if (colon != std::string::npos) {
                const size_t second = type_name.find(':', colon + 1);
                const int n = std::stoi(type_name.substr(colon + 1, second - colon - 1));
                const int m = second == std::string::npos ? 0 : std::stoi(type_name.substr(second + 1));
                for (auto * map : {&sp.ngram_simple, &sp.ngram_map_k}) {
                    map->size_n = n;
                    if (m > 0) {
                        map->size_m = m;
                    }
                }
            }
            sp.types = {common_speculative_type_from_name(kind)};
            spec = common_speculative_init(sp, 1);
            if (!spec) {
                fprintf(stderr, "unknown speculative type %s\n", type_name.c_str());
                return 2;
            }
        }

        llama_batch batch = llama_batch_init(512, 0, 1);
        auto add = [&](llama_token t, llama_pos pos, bool logits) {
            batch.token[batch.n_tokens] = t;
            batch.pos[batch.n_tokens] = pos;
            batch.n_seq_id[batch.n_tokens] = 1;
            batch.seq_id[batch.n_tokens][0] = 0;
            batch.logits[batch.n_tokens] = logits;
            batch.n_tokens++;
        };
        // Prefill; the first token comes from its last row.
        for (size_t i = 0; i < prompt.size(); i += 512) {
            batch.n_tokens = 0;
            for (size_t j = i; j < std::min(prompt.size(), i + 512); ++j) {
                add(prompt[j], j, j + 1 == prompt.size());
            }
            llama_decode(ctx, batch);
        }
        llama_token last = argmax(ctx, batch.n_tokens - 1, n_vocab);
        std::vector<llama_token> history = prompt;  // committed tokens, without `last`
        std::vector<llama_token> out = {last};
        if (spec) {
            common_speculative_begin(spec, 0, prompt);
        }
        llama_pos n_past = prompt.size();
        int steps = 0, drafted = 0, accepted_total = 0;
        const auto t0 = std::chrono::steady_clock::now();
        while ((int) out.size() < max_tokens && !llama_vocab_is_eog(vocab, last)) {
            std::vector<llama_token> draft;
            if (spec) {
                auto & dp = common_speculative_get_draft_params(spec, 0);
                dp.drafting = true;
                dp.n_max = std::min(max_tokens - (int) out.size(), 64);
                dp.pos0 = n_past;
                dp.id_last = last;
                dp.prompt = &history;
                dp.result = &draft;
                common_speculative_draft(spec);
            }
            batch.n_tokens = 0;
            add(last, n_past, true);
            for (size_t i = 0; i < draft.size(); ++i) {
                add(draft[i], n_past + 1 + i, true);
            }
            llama_decode(ctx, batch);
            size_t accepted = 0;
            llama_token next = argmax(ctx, 0, n_vocab);
            while (accepted < draft.size() && next == draft[accepted]) {
                ++accepted;
                next = argmax(ctx, accepted, n_vocab);
            }
            history.push_back(last);
            history.insert(history.end(), draft.begin(), draft.begin() + accepted);
            out.insert(out.end(), draft.begin(), draft.begin() + accepted);
            out.push_back(next);
            n_past += 1 + accepted;
            llama_memory_seq_rm(llama_get_memory(ctx), 0, n_past, -1);
            if (spec) {
                common_speculative_accept(spec, 0, accepted);
            }
            last = next;
            steps++;
            drafted += draft.size();
            accepted_total += accepted;
            for (size_t i = out.size() - accepted - 1; i < out.size(); ++i) {
                if (llama_vocab_is_eog(vocab, out[i])) {
                    out.resize(i + 1);
                    last = out[i];
                    break;
                }
            }
        }
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if ((int) out.size() > max_tokens) {
            out.resize(max_tokens);
        }
        json line = {{"prompt", p},
                     {"type", type_name},
                     {"tokens", out.size()},
                     {"token_ids", out},
                     {"decode_seconds", secs},
                     {"steps", steps},
                     {"drafted", drafted},
                     {"accepted", accepted_total}};
        printf("%s\n", line.dump().c_str());
        fflush(stdout);
        llama_batch_free(batch);
        if (spec) {
            common_speculative_free(spec);
        }
        llama_free(ctx);
    }
    llama_model_free(model);
    return 0;
}
