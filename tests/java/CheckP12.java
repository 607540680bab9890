// Independent PKCS#12 checker used by the devcert integration tests. It does
// what a JDK MQTT client does with a .p12 keystore: KeyStore.getInstance
// ("PKCS12").load(stream, password), take the key entry, and hand it to a
// KeyManagerFactory / SSLContext.
//
// Usage: java CheckP12 P12_FILE PASSWORD_FILE
// Prints "OK alias=<a> alg=<EC|RSA> certs=<n> serial=<HEX> subject=<RFC 2253>"
// and exits 0, or prints the failure and exits 1.
import java.io.FileInputStream;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.Key;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.Collections;
import java.util.List;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;

public class CheckP12 {
    public static void main(String[] args) throws Exception {
        try {
            // The password file holds the passphrase with at most one trailing newline.
            String pw = new String(Files.readAllBytes(Paths.get(args[1])), StandardCharsets.UTF_8);
            if (pw.endsWith("\n")) {
                pw = pw.substring(0, pw.length() - 1);
            }
            char[] pass = pw.toCharArray();
            KeyStore ks = KeyStore.getInstance("PKCS12");
            try (InputStream in = new FileInputStream(args[0])) {
                ks.load(in, pass);
            }
            List<String> aliases = Collections.list(ks.aliases());
            String keyAlias = null;
            for (String a : aliases) {
                if (ks.isKeyEntry(a)) {
                    if (keyAlias != null) {
                        throw new Exception("more than one key entry: " + aliases);
                    }
                    keyAlias = a;
                }
            }
            if (keyAlias == null) {
                throw new Exception("no key entry among " + aliases);
            }
            Key k = ks.getKey(keyAlias, pass);
            if (!(k instanceof PrivateKey)) {
                throw new Exception("entry " + keyAlias + " holds no private key");
            }
            PrivateKey key = (PrivateKey) k;
            Certificate[] chain = ks.getCertificateChain(keyAlias);
            if (chain == null || chain.length == 0) {
                throw new Exception("entry " + keyAlias + " has no certificate chain");
            }
            X509Certificate leaf = (X509Certificate) chain[0];

            // The key must belong to the leaf, and each certificate be signed by the next.
            String alg = key.getAlgorithm();
            String sigAlg = alg.equals("EC") ? "SHA256withECDSA" : "SHA256withRSA";
            byte[] msg = "devcert p12 check".getBytes(StandardCharsets.UTF_8);
            Signature s = Signature.getInstance(sigAlg);
            s.initSign(key);
            s.update(msg);
            byte[] sig = s.sign();
            Signature v = Signature.getInstance(sigAlg);
            v.initVerify(leaf.getPublicKey());
            v.update(msg);
            if (!v.verify(sig)) {
                throw new Exception("private key does not match the leaf certificate");
            }
            for (int i = 0; i + 1 < chain.length; i++) {
                chain[i].verify(chain[i + 1].getPublicKey());
            }

            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, pass);
            SSLContext ctx = SSLContext.getInstance("TLS");
            ctx.init(kmf.getKeyManagers(), null, null);
            ctx.createSSLEngine().setUseClientMode(true);

            System.out.println("OK alias=" + keyAlias + " alg=" + alg + " certs=" + chain.length
                + " serial=" + leaf.getSerialNumber().toString(16).toUpperCase()
                + " subject=" + leaf.getSubjectX500Principal().getName());
        } catch (Exception e) {
            System.out.println("FAILED: " + e);
            System.exit(1);
        }
    }
}
